"""Doctor: every known pitfall as a check with a fix."""
