"""Call-event sources: the PBXs and scripts that tell callhook about calls."""
