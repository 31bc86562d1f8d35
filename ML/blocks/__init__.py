"""Built-in architectures: plain nn.Modules that import only torch, so each file can be copied out and used alone."""
