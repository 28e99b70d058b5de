"""The compiler face: argv → Invocation, passthrough, the TU pipeline, depfiles, atomic outputs."""
