//! tandem traffic generator and sink: sequence numbers, timestamps, loss, gaps, latency
