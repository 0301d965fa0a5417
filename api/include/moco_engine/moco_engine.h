// moco_engine/moco_engine.h - the whole public API of the installed library in one include.
#pragma once

#include "moco_engine/encoder.h"
#include "moco_engine/library.h"
