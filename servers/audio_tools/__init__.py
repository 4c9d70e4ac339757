"""What tool-transcribe and tool-audio-enhanced share on the MCP side: their output models and
renderings (`outputs`) and the path of each call from input to result (`calls`)."""
