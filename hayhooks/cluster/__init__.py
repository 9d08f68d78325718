"""What crosses processes: the runtime folder, the worker board and the multiprocess metrics store."""
