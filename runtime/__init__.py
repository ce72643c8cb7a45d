"""What every process needs to run, below both the projector and the command line: the settings,
the NATS connection, the stream's definition and the embedded nats-server. Imports only schemas."""
