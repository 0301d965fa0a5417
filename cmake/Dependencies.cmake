# Finds every dependency once and records what was found for the configure summary.
# Debian packages: fmt, GoogleTest, OpenBLAS, libjpeg-turbo, nlohmann-json, CLI11
# (scripts/install-deps.sh installs them). CUDA toolkit: nvcc, cudart, cuBLAS, cuDNN 9, NCCL.

find_package(fmt REQUIRED)
if(ENGINE_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
find_package(Threads REQUIRED)
find_package(OpenMP)

# --- OpenBLAS (CPU GEMM through cblas) ---
find_path(CBLAS_INCLUDE_DIR cblas.h
  PATH_SUFFIXES openblas-pthread openblas x86_64-linux-gnu/openblas-pthread x86_64-linux-gnu)
find_library(OPENBLAS_LIBRARY NAMES openblas)
if(CBLAS_INCLUDE_DIR AND OPENBLAS_LIBRARY)
  set(ENGINE_WITH_BLAS ON)
  add_library(engine_blas INTERFACE)
  target_include_directories(engine_blas INTERFACE ${CBLAS_INCLUDE_DIR})
  target_link_libraries(engine_blas INTERFACE ${OPENBLAS_LIBRARY})
  target_compile_definitions(engine_blas INTERFACE ENGINE_WITH_BLAS=1)
else()
  set(ENGINE_WITH_BLAS OFF)
  message(WARNING "OpenBLAS not found: CPU matmul falls back to the naive reference loops "
                  "(slow). Install it with scripts/install-deps.sh (libopenblas-dev).")
endif()

# engine_require(FOUND WHAT WHY PACKAGE): stops the configure step with one message that says what
# is missing, what needs it, and the Debian package that provides it.
function(engine_require found what why package)
  if(NOT ${found})
    message(FATAL_ERROR "${what} not found (${why}): run scripts/install-deps.sh or apt-get install ${package}")
  endif()
endfunction()

# --- image codecs for data/ (TurboJPEG, libpng); safetensors headers; the command line ---
find_package(PkgConfig REQUIRED)
pkg_check_modules(TURBOJPEG QUIET IMPORTED_TARGET libturbojpeg)
engine_require(TURBOJPEG_FOUND "TurboJPEG" "the data pipeline decodes JPEGs with it" libturbojpeg0-dev)
find_package(PNG QUIET)
engine_require(PNG_FOUND "libpng" "PNG images and the synthetic dataset's masks" libpng-dev)
find_package(nlohmann_json QUIET)
engine_require(nlohmann_json_FOUND "nlohmann-json" "safetensors headers need it" nlohmann-json3-dev)
find_package(CLI11 QUIET)
engine_require(CLI11_FOUND "CLI11" "the moco command line needs it" libcli11-dev)

# --- CUDA toolkit ---
# engine_find_toolkit_library(PREFIX HEADER VERSION_HEADER ROOT NAMES...): finds a library that
# ships with the CUDA toolkit (or under ROOT) and sets PREFIX_INCLUDE_DIR, PREFIX_LIBRARY,
# PREFIX_FOUND and PREFIX_VERSION, the version read from PREFIX_MAJOR/MINOR/PATCH(LEVEL) defines.
function(engine_find_toolkit_library prefix header version_header root)
  set(lib_dirs ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}/lib ${CUDAToolkit_LIBRARY_ROOT}/lib64)
  find_path(${prefix}_INCLUDE_DIR ${header} HINTS ${root}/include ${CUDAToolkit_INCLUDE_DIRS})
  find_library(${prefix}_LIBRARY NAMES ${ARGN} HINTS ${root}/lib ${lib_dirs})
  if(${prefix}_INCLUDE_DIR AND ${prefix}_LIBRARY)
    file(STRINGS ${${prefix}_INCLUDE_DIR}/${version_header} lines
         REGEX "#define ${prefix}_(MAJOR|MINOR|PATCH|PATCHLEVEL) +[0-9]+")
    string(REGEX REPLACE ".*MAJOR +([0-9]+).*MINOR +([0-9]+).*PATCH[A-Z]* +([0-9]+).*" "\\1.\\2.\\3"
           version "${lines}")
    set(${prefix}_VERSION ${version} PARENT_SCOPE)
    set(${prefix}_FOUND ON PARENT_SCOPE)
  else()
    set(${prefix}_FOUND OFF PARENT_SCOPE)
  endif()
endfunction()

# MPI: launching and bootstrapping distributed runs, and the collectives on CPU tensors
# (engine/collectives.h). Optional: without it a build runs one process, and refuses mpirun.
option(ENGINE_MPI "Build the MPI backend of the collectives when MPI is found" ON)
set(ENGINE_WITH_MPI OFF)
if(ENGINE_MPI)
  find_package(MPI COMPONENTS C QUIET)
  if(MPI_C_FOUND)
    set(ENGINE_WITH_MPI ON)
  endif()
endif()

set(ENGINE_WITH_CUDA OFF)
set(ENGINE_WITH_CUDNN OFF)
set(ENGINE_WITH_NCCL OFF)
if(ENGINE_CUDA_EMULATION)
  # The emulator's threads are Boost.Context fibers. Its __shared__ variables are statics of one
  # named section; GCC drops the section of a static inside a template, clang keeps it.
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "ENGINE_CUDA_EMULATION needs clang as the C++ compiler (found ${CMAKE_CXX_COMPILER_ID}): "
                        "GCC ignores the section attribute the emulator uses to find every __shared__ variable in "
                        "templates. Configure with -DCMAKE_CXX_COMPILER=clang++ (scripts/test-emulation.sh does).")
  endif()
  find_package(boost_context CONFIG QUIET)
  engine_require(boost_context_FOUND "Boost.Context" "the CUDA emulation runs each CUDA thread as a fiber"
                 libboost-context-dev)
  set(ENGINE_WITH_CUDA ON)
elseif(ENGINE_CUDA)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # Hopper (H100/H200) by default. Add others with -DCMAKE_CUDA_ARCHITECTURES="80;90".
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90)
    endif()
    enable_language(CUDA)
    # CMake 3.25 does not know nvcc 13's flag for C++20: tell it.
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA_STANDARD 20)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    # fmt 9 turns its constexpr off under nvcc and then fails to compile with g++ 12 as the host
    # compiler; nvcc 13 handles it, so keep it on.
    add_compile_definitions($<$<COMPILE_LANGUAGE:CUDA>:FMT_USE_CONSTEXPR=1>)
    find_package(CUDAToolkit REQUIRED)
    set(ENGINE_WITH_CUDA ON)

    # cuDNN and NCCL ship with the toolkit on our machines; ENGINE_CUDNN_ROOT / ENGINE_NCCL_ROOT
    # point elsewhere (for example at PyTorch's nvidia.cudnn / nvidia.nccl Python packages).
    engine_find_toolkit_library(CUDNN cudnn.h cudnn_version.h "${ENGINE_CUDNN_ROOT}" cudnn libcudnn.so.9)
    engine_find_toolkit_library(NCCL nccl.h nccl.h "${ENGINE_NCCL_ROOT}" nccl libnccl.so.2)
    set(ENGINE_WITH_CUDNN ${CUDNN_FOUND})
    set(ENGINE_WITH_NCCL ${NCCL_FOUND})
  endif()
endif()
