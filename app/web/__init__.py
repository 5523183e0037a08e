"""HTTP doors: routers that render pages or JSON over the plain functions of ``app``."""
