"""Channel adapters: one module per platform. Each turns platform requests into
``IncomingMessage`` and delivers ``OutgoingMessage`` through the platform's send API."""
