"""The console's pages, one module (and router) per section."""
