"""The local target: every component replica is a process on 127.0.0.1, every hop goes through a
fault proxy, and service names resolve through a DNS server that bascule runs."""
