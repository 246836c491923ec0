"""Everything that reads or writes outside the process: capture files and live interfaces, packet
filters, flow logs and their export formats, limits on what is read.
"""

__all__ = [
    "bpf",
    "capture",
    "community_id",
    "eve",
    "flowlog",
    "frames",
    "limits",
    "live",
    "pcap_writer",
    "rows",
    "source",
    "tls_names",
]
