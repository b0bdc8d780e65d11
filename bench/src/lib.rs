//! tandem benchmarks: criterion micro-benchmarks and lab macro benchmarks
