"""The bundled inference server: API, scheduler, runners, model store."""
