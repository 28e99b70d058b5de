# CMake toolchain file: build C and C++ through clang-llm / clang++-llm.
#
#   cmake -S . -B build -DCMAKE_TOOLCHAIN_FILE=<clang-llm>/cmake/clang-llm-toolchain.cmake
#
# The launchers are looked up next to this file (../wrappers), so the toolchain file keeps
# working wherever the project is installed. Point CLANG_LLM_BIN_DIR elsewhere (e.g. a
# virtualenv's bin/) to use other launchers. Settings for the wrapper come from CLANG_LLM_*
# environment variables or .clang-llm.toml files (see ClangLLM.cmake), never from extra
# compiler flags, so compile_commands.json stays clean for clangd and friends.

set(CLANG_LLM_BIN_DIR "${CMAKE_CURRENT_LIST_DIR}/../wrappers"
    CACHE PATH "Directory holding the clang-llm and clang++-llm launchers")
# try_compile() projects re-read this file: hand them the same directory.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES CLANG_LLM_BIN_DIR)

get_filename_component(_clang_llm_bin "${CLANG_LLM_BIN_DIR}" ABSOLUTE)
foreach(_clang_llm_tool IN ITEMS clang-llm clang++-llm)
  if(NOT EXISTS "${_clang_llm_bin}/${_clang_llm_tool}")
    message(FATAL_ERROR
      "clang-llm toolchain: ${_clang_llm_bin}/${_clang_llm_tool} not found; "
      "set -DCLANG_LLM_BIN_DIR=<directory with the clang-llm launchers>")
  endif()
endforeach()

set(CMAKE_C_COMPILER "${_clang_llm_bin}/clang-llm")
set(CMAKE_CXX_COMPILER "${_clang_llm_bin}/clang++-llm")

# Archives with the LLVM tools of the same major as the compiler (GNU ar would do, but a
# toolchain that is all LLVM is one thing less to wonder about).
find_program(CLANG_LLM_AR NAMES llvm-ar-22 llvm-ar)
find_program(CLANG_LLM_RANLIB NAMES llvm-ranlib-22 llvm-ranlib)
if(CLANG_LLM_AR)
  set(CMAKE_AR "${CLANG_LLM_AR}" CACHE FILEPATH "Archiver" FORCE)
endif()
if(CLANG_LLM_RANLIB)
  set(CMAKE_RANLIB "${CLANG_LLM_RANLIB}" CACHE FILEPATH "Archive indexer" FORCE)
endif()

# clang_llm_source_settings() for the project, without a separate include().
include("${CMAKE_CURRENT_LIST_DIR}/ClangLLM.cmake")

unset(_clang_llm_bin)
unset(_clang_llm_tool)
