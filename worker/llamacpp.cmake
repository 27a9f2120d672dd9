# The llama.cpp engine (included by worker/CMakeLists.txt).
#
# Where llama.cpp comes from, in order:
#   1. a system llama.cpp (find_package(llama) finds its CMake package);
#   2. the source tree third_party/llama.cpp, fetched by scripts/fetch_llama.sh,
#      built here as a static subproject that only our targets pull in
#      (EXCLUDE_FROM_ALL: nothing of it builds unless a target needs it);
#   3. neither: the engine is skipped with a message and the project still builds.
#
# Targets: corral_worker_llamacpp (the engine), corral_gguf_gen (writes the tiny
# test GGUF). Elsewhere, `if(TARGET corral_worker_llamacpp)` tells whether they exist.
#
# llama.cpp is built with its own flags: the project's -Werror and sanitizer
# options live on the INTERFACE target corral_options, which only project
# targets link.

option(CORRAL_LLAMACPP "Build the llama.cpp engine when llama.cpp is available" ON)
set(CORRAL_LLAMACPP_SOURCE_DIR "${PROJECT_SOURCE_DIR}/third_party/llama.cpp"
    CACHE PATH "llama.cpp source tree (scripts/fetch_llama.sh puts it here)")
set(CORRAL_HAVE_LLAMACPP OFF)

# Adds llama.cpp as a subproject. A function, so the settings below are normal
# variables of this scope only: they reach llama.cpp's option() calls (policy
# CMP0077) without touching the cache or the rest of the project.
function(corral_add_llamacpp_subproject src)
  set(BUILD_SHARED_LIBS OFF)
  set(GGML_NATIVE OFF)  # portable binaries: CI and fleet machines differ
  set(GGML_CCACHE OFF)  # the launcher is set below, like the project's
  set(LLAMA_BUILD_COMMON OFF)
  set(LLAMA_BUILD_TESTS OFF)
  set(LLAMA_BUILD_TOOLS OFF)
  set(LLAMA_BUILD_EXAMPLES OFF)
  set(LLAMA_BUILD_SERVER OFF)
  set(LLAMA_BUILD_APP OFF)
  set(LLAMA_BUILD_UI OFF)
  set(LLAMA_USE_PREBUILT_UI OFF)  # defaults ON and downloads at build time
  set(LLAMA_OPENSSL OFF)
  set(LLAMA_ALL_WARNINGS OFF)  # third-party code: its warnings are not ours to fix
  set(GGML_ALL_WARNINGS OFF)
  set(LLAMA_FATAL_WARNINGS OFF)
  set(GGML_FATAL_WARNINGS OFF)
  if(CMAKE_CXX_COMPILER_LAUNCHER)
    set(CMAKE_C_COMPILER_LAUNCHER ${CMAKE_CXX_COMPILER_LAUNCHER})
  endif()
  # No debug info for llama.cpp in RelWithDebInfo: it roughly doubles the
  # object size and the build time of a library we do not step through.
  set(CMAKE_C_FLAGS_RELWITHDEBINFO "-O2 -DNDEBUG")
  set(CMAKE_CXX_FLAGS_RELWITHDEBINFO "-O2 -DNDEBUG")
  add_subdirectory(${src} ${CMAKE_BINARY_DIR}/third_party/llama.cpp EXCLUDE_FROM_ALL SYSTEM)
endfunction()

if(CORRAL_LLAMACPP)
  find_package(llama CONFIG QUIET)
  if(llama_FOUND AND TARGET llama)
    message(STATUS "corral: llama.cpp engine with the system llama.cpp ${LLAMA_VERSION}")
    set(CORRAL_HAVE_LLAMACPP ON)
    set(corral_ggml_base ggml::ggml-base)
  elseif(EXISTS "${CORRAL_LLAMACPP_SOURCE_DIR}/include/llama.h")
    message(STATUS "corral: llama.cpp engine with the source tree ${CORRAL_LLAMACPP_SOURCE_DIR}")
    corral_add_llamacpp_subproject("${CORRAL_LLAMACPP_SOURCE_DIR}")
    set(CORRAL_HAVE_LLAMACPP ON)
    set(corral_ggml_base ggml-base)
  else()
    message(STATUS "corral: llama.cpp not found (run scripts/fetch_llama.sh); "
                   "the llama.cpp engine is not built")
  endif()
endif()
if(CORRAL_HAVE_LLAMACPP)
  add_library(corral_worker_llamacpp llamacpp_engine.cc)
  target_link_libraries(corral_worker_llamacpp PUBLIC corral_common PRIVATE llama)

  # Writes the tiny random-weight llama GGUF used by tests and benchmarks.
  add_executable(corral_gguf_gen gguf_gen.cc)
  target_link_libraries(corral_gguf_gen PRIVATE corral_options ${corral_ggml_base} CLI11::CLI11)
endif()
