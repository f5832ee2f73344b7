"""FreeSWITCH inbound event socket (ESL): framing (``protocol``), the asyncio client
(``client``) and the mapping of channel events to callhook call events (``calls``)."""
