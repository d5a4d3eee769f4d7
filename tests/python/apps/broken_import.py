raise ImportError("this module cannot be imported on purpose")
