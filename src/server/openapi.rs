//! `/openapi.json`: the OpenAPI 3.1 description of the service. A test holds
//! it to the routes actually served.

use serde_json::{json, Value};

/// The OpenAPI 3.1 description of the service.
pub fn openapi() -> Value {
    let error = json!({"type": "object", "required": ["error", "kind", "retryable"], "properties": {
        "error": {"type": "string"}, "kind": {"type": "string"}, "retryable": {"type": "boolean"}}});
    let output = json!({"type": "object", "properties": {
        "result": {"description": "text, or the parsed JSON value with jsonOutput; for embed, a vector (`text`) or a list of vectors (`texts`)"},
        "dimensions": {"type": "integer", "description": "the size of the vectors (embed only)"},
        "finishReason": {"type": ["string", "null"], "examples": ["STOP", "LENGTH", "STOP_SEQUENCE"]},
        "tokenUsed": {"type": ["integer", "null"]}, "promptTokens": {"type": ["integer", "null"]},
        "completionTokens": {"type": ["integer", "null"]}}});
    let common = json!({
        "llmProvider": {"type": "string"}, "model": {"type": "string"}, "stream": {"type": "boolean"},
        "temperature": {"type": "number"}, "topP": {"type": "number"}, "maxTokens": {"type": "integer"},
        "seed": {"type": "integer", "description": "sampling seed; the model's defaults.seed when left out"},
        "stopWords": {"type": "array", "items": {"type": "string"}},
        "promptVariables": {"type": "object"}});
    let with = |extra: Value| {
        let mut props = common.clone();
        if let (Some(p), Some(e)) = (props.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        props
    };
    let text = json!({"type": "object", "required": ["llmProvider", "model"], "properties": with(json!({
        "prompt": {"type": "string"}, "promptName": {"type": "string"}}))});
    let chat = json!({"type": "object", "required": ["llmProvider", "model", "messages"], "properties": with(json!({
        "instructions": {"type": "string"}, "jsonOutput": {"type": "boolean"},
        "messages": {"type": "array", "items": {"type": "object", "required": ["role", "message"], "properties": {
            "role": {"enum": ["user", "assistant", "system"]}, "message": {"type": "string"}}}}}))});
    let summarize = json!({"type": "object", "required": ["llmProvider", "model", "text"], "properties": {
        "llmProvider": {"type": "string"}, "model": {"type": "string"}, "text": {"type": "string"},
        "maxLength": {"type": "integer"}, "minLength": {"type": "integer"}, "stream": {"type": "boolean"}}});
    let embed = json!({"type": "object", "required": ["llmProvider", "model"], "properties": {
        "llmProvider": {"type": "string"}, "model": {"type": "string"},
        "text": {"type": "string", "description": "one text; `result` is its vector"},
        "texts": {"type": "array", "items": {"type": "string"}, "maxItems": crate::connector::MAX_EMBED_TEXTS, "description": "several texts; `result` is their vectors in order; admission charges one per text"},
        "dimensions": {"type": "integer", "minimum": 1}, "normalize": {"type": "boolean"},
        "truncate": {"type": "boolean"}, "truncationDirection": {"enum": ["right", "left"]}}});
    let task = |summary: &str, schema: Value| {
        let mut responses = serde_json::Map::new();
        responses.insert("200".into(), json!({"description": "the task output, or server-sent events (chunk, output, error) with \"stream\": true; a streamed task refused before anything is sent upstream gets the status and body of a plain one, and only failures after the stream started are `error` events",
            "content": {"application/json": {"schema": output}, "text/event-stream": {}}}));
        for (code, what) in [
            ("400", "malformed JSON, or an identity header present but unusable (empty, not UTF-8, over 256 bytes, control characters, repeated)"),
            ("401", "no or bad application key"),
            ("403", "denied (the body says which grant is missing), or delegation refused"),
            ("404", "unknown integration, model, prompt or group"),
            ("408", "the body did not arrive whole within the body timeout"),
            ("409", "inactive"),
            ("413", "body over 1 MiB"),
            ("422", "invalid input"),
            ("429", "rate limited or overloaded (Retry-After, estimated when the upstream gave none)"),
            ("502", "upstream error"),
            ("503", "upstream loading or unavailable (Retry-After, estimated when the upstream gave none)"),
            ("504", "upstream timeout"),
        ] {
            responses.insert(
                code.into(),
                json!({"description": what, "content": {"application/json": {"schema": error}}}),
            );
        }
        json!({"post": {"summary": summary, "security": [{"applicationKey": []}],
            "parameters": [{"name": "X-Hfconnect-User", "in": "header", "schema": {"type": "string"}},
                           {"name": "X-Hfconnect-Group", "in": "header", "schema": {"type": "string"}}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": schema}}},
            "responses": responses}})
    };
    let openai_error = json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
        "properties": {"message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}});
    let openai = |summary: &str, fields: Value, answer: &str| {
        let mut responses = serde_json::Map::new();
        responses.insert("200".into(), json!({"description": answer}));
        for (code, what) in [
            ("400", "malformed or invalid, or a field OpenAI defines that hfconnect does not do (`param` names it)"),
            ("401", "no or bad application key"),
            ("403", "denied (the message names the missing grant), or inactive"),
            ("404", "unknown model id (`INTEGRATION/MODEL`)"),
            ("429", "rate limited or overloaded (Retry-After)"),
            ("502", "upstream error"), ("503", "upstream loading or unavailable (Retry-After)"), ("504", "upstream timeout"),
        ] {
            responses.insert(code.into(), json!({"description": what, "content": {"application/json": {"schema": openai_error}}}));
        }
        json!({"post": {"summary": summary, "security": [{"applicationKey": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["model"], "properties": fields}}}},
            "responses": responses}})
    };
    let chat_fields = json!({"model": {"type": "string", "description": "INTEGRATION/MODEL"},
        "messages": {"type": "array", "description": "role system, developer, user or assistant; content a string or text parts"},
        "max_tokens": {"type": "integer"}, "max_completion_tokens": {"type": "integer"}, "temperature": {"type": "number"},
        "top_p": {"type": "number"}, "stop": {"description": "a string or a list"}, "seed": {"type": "integer"},
        "n": {"const": 1}, "response_format": {"description": "text or json_object"}, "stream": {"type": "boolean"},
        "stream_options": {"description": "include_usage"}, "user": {"type": "string", "description": "acted for by applications with act_for_users, else ignored"}});
    let completion_fields = json!({"model": {"type": "string"}, "prompt": {"type": "string"}, "max_tokens": {"type": "integer"},
        "temperature": {"type": "number"}, "top_p": {"type": "number"}, "stop": {"description": "a string or a list"},
        "seed": {"type": "integer"}, "n": {"const": 1}, "stream": {"type": "boolean"}, "stream_options": {"description": "include_usage"}, "user": {"type": "string"}});
    let embedding_fields = json!({"model": {"type": "string"}, "input": {"description": "a string or a list of strings"},
        "encoding_format": {"enum": ["float", "base64"]}, "dimensions": {"type": "integer"}, "user": {"type": "string"}});
    let models = |summary: &str| {
        json!({"get": {"summary": summary, "security": [{"applicationKey": []}],
        "responses": {"200": {"description": "OpenAI's model objects; owned_by is the integration"},
                      "401": {"description": "no or bad application key"},
                      "404": {"description": "unknown, or not one the caller may EXECUTE"}}}})
    };
    json!({
        "openapi": "3.1.0",
        "info": {"title": "hfconnect", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"applicationKey": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/v1/tasks/text-complete": task("LLM_TEXT_COMPLETE", text),
            "/v1/tasks/chat-complete": task("LLM_CHAT_COMPLETE", chat),
            "/v1/tasks/summarize": task("Summarize a text", summarize),
            "/v1/tasks/embed": task("LLM_GENERATE_EMBEDDINGS (does not stream)", embed),
            "/v1/chat/completions": openai("OpenAI-compatible chat (a chat task)", chat_fields, "chat.completion, or chat.completion.chunk events ending with data: [DONE] with \"stream\": true"),
            "/v1/completions": openai("OpenAI-compatible completion (a text-complete task)", completion_fields, "text_completion, or its chunks ending with data: [DONE]"),
            "/v1/embeddings": openai("OpenAI-compatible embeddings (an embeddings task)", embedding_fields, "a list of embedding objects"),
            "/v1/models": models("the models the caller may EXECUTE, as INTEGRATION/MODEL"),
            "/v1/models/{id}": models("one of them"),
            "/v1/catalog": {"get": {"summary": "integrations, models and prompts the caller can READ", "security": [{"applicationKey": []}],
                "responses": {"200": {"description": "the catalog"}, "401": {"description": "no or bad application key"}}}},
            "/v1/usage": {"get": {"summary": "the token budgets that cover the caller: limit, used, reserved, remaining, resets_at; ADMIN sees every payer's", "security": [{"applicationKey": []}],
                "responses": {"200": {"description": "the usage"}, "401": {"description": "no or bad application key"}}}},
            "/v1/endpoints/{integration}/{model}": {
                "get": {"summary": "the model's Inference Endpoint: state, replicas, scaling (READ on the model)", "security": [{"applicationKey": []}],
                    "responses": {"200": {"description": "the endpoint"}, "401": {"description": "no or bad application key"}, "403": {"description": "denied, with the reason"}, "404": {"description": "unknown integration or model, or no endpoint serves it"}}},
                "post": {"summary": "`{model}/pause`, `/resume`, `/scale-to-zero`, `/scale` (body `{min, max, scale_to_zero_after}`): UPDATE on the model; `/create` (from the model's `deployment` block): CREATE; `/delete`: DELETE; `/plan` (drift, no change): READ; `/apply` (match the `deployment` block): UPDATE, and CREATE when it creates", "security": [{"applicationKey": []}],
                    "responses": {"200": {"description": "the endpoint after the operation"}, "401": {"description": "no or bad application key"}, "403": {"description": "denied, with the reason; nothing was sent upstream"}, "422": {"description": "an unknown operation or a bad scale body"}}}},
            "/healthz": {"get": {"summary": "alive", "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "config loaded", "responses": {"200": {"description": "ready, with counts and `config`: hash, loaded_at, reloads, refused_reloads, last_refused {at, errors}; a refused reload stays ready; `admission`: backend (local, redis), and for redis whether it is reachable and on_unavailable"}}}},
            "/openapi.json": {"get": {"summary": "this document", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text exposition format"}}}},
        }
    })
}
