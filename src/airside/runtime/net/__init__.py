"""Container networking for the oci runtime, through CNI (see `bridge` for the whole picture).

Modules: `cni` runs a CNI configuration list's plugin chain; `netns` makes and removes persistent
network namespaces; `dns` decides a container's resolvers and forwards DNS when it must; `restrict`
fills the firewall admin chain for restricted_networks; `bridge` is the worker's network built of them.
"""

from .bridge import Attached, BridgeNetwork, NetworkConfig, NetworkError

__all__ = ["Attached", "BridgeNetwork", "NetworkConfig", "NetworkError"]
