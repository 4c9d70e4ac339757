"""Each image tool call from inputs to result: the images opened and examined through
`shared.worker`, then the engine's answer, shaped by `outputs`."""

from __future__ import annotations

from servers.image_tools import outputs
from shared import image_answers, worker
from shared.server import ToolResult


async def answer(sources: list[str], question: str, *, verify: bool = False, instruction: str | None = None,
                 no_model: str = image_answers.NO_MODEL_CONSEQUENCE,
                 no_model_heading: str | None = None) -> ToolResult:
    """The arguments after `question` as `image_answers.answer` takes them; `data` is a `VisionOutput`."""
    prepared, _labels = await worker.run_on_inputs(sources, image_answers.look)
    result = await image_answers.answer(prepared, question, verify=verify, instruction=instruction,
                                        no_model=no_model, no_model_heading=no_model_heading)
    return ToolResult(text=outputs.vision_text(result), data=outputs.vision_output(result))
