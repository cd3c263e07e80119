// Replaced by the writer implementation.
