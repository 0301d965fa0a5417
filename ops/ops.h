// ops.h - every op of the engine in one include (the list itself is op_list.def).
#pragma once

#include "ops/batchnorm2d.h"
#include "ops/conv2d.h"
#include "ops/elementwise_binary.h"
#include "ops/elementwise_unary.h"
#include "ops/gaussian_filter.h"
#include "ops/index_select.h"
#include "ops/infonce.h"
#include "ops/l2_normalize.h"
#include "ops/linear.h"
#include "ops/matmul.h"
#include "ops/momentum_update.h"
#include "ops/op_registry.h"
#include "ops/pooling.h"
#include "ops/reduce_dim.h"
#include "ops/saliency_mask.h"
#include "ops/sgd_step.h"
