//! tandem data path: forwarding pipeline, ARP and route tables, pinned batch run loop
