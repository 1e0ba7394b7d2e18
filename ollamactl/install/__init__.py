"""Install, update and uninstall as plans of idempotent, reversible steps."""
