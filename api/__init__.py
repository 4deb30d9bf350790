"""The FastAPI gateway: routes, schemas, auth and error mapping. Thin: HTTP to commands, events to HTTP."""
