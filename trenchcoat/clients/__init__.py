"""The typed clients of every service: the one way a process (or a tool) calls another.
Protobuf stays inside them; callers get plain values and typed errors."""
