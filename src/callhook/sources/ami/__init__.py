"""Asterisk AMI source: the wire format (``protocol``), channels and their endpoints
(``channels``), the mapping of call events (``calls``) and the asyncio client (``client``)."""
