"""Models by family. Each family file holds scratch and fast twins with the same constructor,
forward signature and parameter names, so ``fast.load_state_dict(scratch.state_dict())`` works."""
