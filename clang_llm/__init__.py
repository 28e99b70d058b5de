"""clang-llm: LLM-guided code-size optimization as a drop-in clang wrapper."""

__version__ = "0.1.0"
LLVM_MAJOR = 22
