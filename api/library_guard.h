// library_guard.h - how every exported function of libmoco_engine.so enters the engine: the
// library's log routing is in place first, and any exception the engine throws leaves the library
// as moco_engine::Error with the same message (the engine's own exception types are hidden in the
// shared library, so a caller could not catch them by type).
#pragma once

#include <exception>
#include <utility>

#include "moco_engine/library.h"

namespace moco_engine::detail {

// Routes the engine's log to the callback of set_log_callback (or nowhere). Idempotent.
void route_engine_log();

template <typename Body>
decltype(auto) call_library(Body&& body) {
  route_engine_log();
  try {
    return std::forward<Body>(body)();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(e.what());
  }
}

}  // namespace moco_engine::detail
