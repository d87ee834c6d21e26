"""The relayed stream names the model the client asked for, whatever the event's spacing."""

from addons.responses import model_renamer


def test_every_form_of_the_model_field_is_renamed_and_nothing_else() -> None:
    rename = model_renamer("gpt-4o", "openai:gpt-4o")
    data = (
        b'data: {"id":"a","model":"gpt-4o","choices":[]}\n\n'
        b'data: {"id":"b", "model" : "gpt-4o", "choices":[]}\n\n'
        b'data: {"id":"c","model":"gpt-4o-mini","text":"I am \\"gpt-4o\\" here"}\n\n'
    )
    assert rename(data) == (
        b'data: {"id":"a","model":"openai:gpt-4o","choices":[]}\n\n'
        b'data: {"id":"b", "model":"openai:gpt-4o", "choices":[]}\n\n'
        b'data: {"id":"c","model":"gpt-4o-mini","text":"I am \\"gpt-4o\\" here"}\n\n'
    )
