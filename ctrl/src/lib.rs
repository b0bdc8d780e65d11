//! tandem management plane: config, hardware profiles, tandemd and tandemctl
