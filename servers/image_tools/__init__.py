"""What tool-vqa and tool-vqa-enhanced share on the MCP side: their output models and text
(`outputs`) and the path of each call from inputs to result (`calls`)."""
