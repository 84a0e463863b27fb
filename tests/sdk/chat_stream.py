"""What the SDK tests read from an OpenAI chat stream (shared by both SDK test files)."""


def collect(stream):
    """The text, finish reason and usage of an `openai` chat completion stream."""
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    return text, finish, usage
