"""Protocol replay servers for PBXs that cannot be installed here (Asterisk, FreeSWITCH).

They speak the real wire framing and replay *scripted* event sequences. The scripts are built
from the documented event shapes (docs.asterisk.org AMI event reference, asterisk/testsuite,
FreeSWITCH documentation), not captured from a running PBX: they show what callhook does with
the events as documented, and say nothing about undocumented behaviour of a real server.
"""
