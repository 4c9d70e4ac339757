"""tool-vqa: questions about images, answered by a vision model grounded in local evidence."""

from __future__ import annotations

from servers import registry
from servers.image_tools import calls
from servers.image_tools.outputs import VisionOutput
from shared.params import PathOrUrl, Question
from shared.server import REMOTE_MODEL, ToolResult, add_tool, create_server


async def visual_question_answering(image_path_or_url: PathOrUrl, question: Question) -> ToolResult:
    """Answer a question about an image (photo, screenshot, chart, document scan).

    Local evidence is computed first and given to the vision model with the image: OCR text with positions
    (Chinese and English), size and format (from the bytes), EXIF (camera, time, GPS), dominant colours,
    faces and QR codes. The text result is the model's answer; the structured result adds the evidence.
    Without a vision model (TOOLSUITE_VISION_MODEL and base URL/key) the result is the evidence and a
    statement that no model is set. Images are downscaled to TOOLSUITE_VISION_MAX_SIDE (1568 px) for the model.
    """
    return await calls.answer([image_path_or_url], question)


def build():
    server = create_server(registry.name_of(__name__),
                           "Answers questions about images, grounded in OCR and other local evidence.")
    add_tool(server, visual_question_answering, title="Ask about an image", output=VisionOutput,
             annotations=REMOTE_MODEL)
    return server
