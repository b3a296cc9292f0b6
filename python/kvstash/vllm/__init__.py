# SPDX-License-Identifier: Apache-2.0
"""kvstash in vLLM: a secondary tier of its KV offloading, and a KV
connector for prefill/decode disaggregation.

- KvstashTier (kvstash.vllm.tier): a SecondaryTierManager under vLLM's
  OffloadingConnector with the TieringOffloadingSpec; blocks go GPU -> CPU
  primary tier -> kvstash, and back.
- KvstashConnector (kvstash.vllm.connector): a KVConnectorBase_V1; the
  prefill instance streams each block into its sidecar layer by layer, the
  decode instance has its own sidecar fetch them from the prefill's and
  waits for layer i in wait_for_layer_load.

Both import vLLM's base classes when vLLM is installed and subclass them;
without vLLM they stand alone (the tests drive them as vLLM does). See
docs/python.md for the configuration.
"""
from .connector import KvstashConnector, KvstashConnectorMetadata
from .tier import KvstashTier

__all__ = ["KvstashConnector", "KvstashConnectorMetadata", "KvstashTier"]
