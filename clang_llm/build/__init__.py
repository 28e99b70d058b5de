"""Build steps shared by the compile path, labelling and evaluation: opt and codegen of one TU
(`TUBuilder`), what they found (`Finding`), clang's target options, atomic outputs."""
