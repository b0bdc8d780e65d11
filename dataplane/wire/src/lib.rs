//! tandem wire formats: zero-copy views and Reprs for Ethernet, ARP, IPv4/IPv6, UDP, TCP, ICMP
