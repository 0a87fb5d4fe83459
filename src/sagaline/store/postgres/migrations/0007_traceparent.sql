-- The W3C trace context a run was started in, so every execution of it (after a crash, on
-- another worker) continues one trace. NULL: tracing was off, or the start had no span.
ALTER TABLE runs ADD COLUMN traceparent TEXT;
