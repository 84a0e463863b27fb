// Vercel AI SDK (ai 7 + @ai-sdk/openai 4) against POST /v1/responses.
// `openai(model)` is the Responses API model in @ai-sdk/openai >= 2.
//
// Env: DGIDGI_BASE_URL (gateway root, no path, e.g. http://127.0.0.1:1234), DGIDGI_KEY.
// Run from tests/node: node ai_sdk_responses.mjs (tests/node_clients.rs does, against the fakes).
// Runs every check for every model, prints "ai sdk responses: N checks passed, N failed" and
// exits 1 if any failed.
import assert from 'node:assert/strict';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, jsonSchema, stepCountIs, streamText, tool } from 'ai';

const BASE = (process.env.DGIDGI_BASE_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
const KEY = process.env.DGIDGI_KEY ?? 'test-key';
const MODELS = (process.env.DGIDGI_MODELS ?? 'openai-resp/gpt-fake,anthropic/claude-fake').split(',');

const openai = createOpenAI({ baseURL: BASE + '/v1', apiKey: KEY });

function weatherTool(seen) {
  return tool({
    description: 'Get the current weather for a city.',
    inputSchema: jsonSchema({
      type: 'object',
      properties: { city: { type: 'string', description: 'City name' } },
      required: ['city'],
      additionalProperties: false,
    }),
    execute: async ({ city }) => {
      seen.push(city);
      return `sunny in ${city}`;
    },
  });
}

const checks = {
  async generateText(model) {
    const r = await generateText({ model: openai(model), prompt: 'hello ai sdk', maxRetries: 0 });
    assert.equal(r.text, 'echo: hello ai sdk');
    assert.equal(r.finishReason, 'stop');
    assert.ok(r.usage.inputTokens > 0, `inputTokens ${r.usage.inputTokens}`);
    assert.ok(r.usage.outputTokens > 0, `outputTokens ${r.usage.outputTokens}`);
  },

  async generateTextSystem(model) {
    const r = await generateText({
      model: openai(model),
      system: 'You are terse.',
      prompt: 'hello with system',
      maxOutputTokens: 64,
      maxRetries: 0,
    });
    assert.equal(r.text, 'echo: hello with system');
  },

  async streamText(model) {
    let error;
    const r = streamText({
      model: openai(model),
      prompt: 'stream ai sdk',
      maxRetries: 0,
      onError: ({ error: e }) => { error = e; },
    });
    const parts = [];
    for await (const delta of r.textStream) parts.push(delta);
    if (error) throw error;
    assert.ok(parts.length >= 1);
    assert.equal(parts.join(''), 'echo: stream ai sdk');
    assert.equal(await r.text, 'echo: stream ai sdk');
    assert.equal(await r.finishReason, 'stop');
    const usage = await r.usage;
    assert.ok(usage.inputTokens > 0 && usage.outputTokens > 0, JSON.stringify(usage));
  },

  async toolLoop(model) {
    const seen = [];
    const r = await generateText({
      model: openai(model),
      prompt: 'What is the weather in Paris and Berlin?',
      tools: { get_weather: weatherTool(seen) },
      stopWhen: stepCountIs(3),
      maxRetries: 0,
    });
    assert.deepEqual(seen.sort(), ['Berlin', 'Paris']);
    assert.equal(r.steps.length, 2);
    assert.equal(r.steps[0].toolCalls.length, 2);
    assert.ok(r.text.startsWith('echo:'), r.text);
  },

  async streamToolLoop(model) {
    const seen = [];
    let error;
    const r = streamText({
      model: openai(model),
      prompt: 'What is the weather in Paris and Berlin?',
      tools: { get_weather: weatherTool(seen) },
      stopWhen: stepCountIs(3),
      maxRetries: 0,
      onError: ({ error: e }) => { error = e; },
    });
    let streamed = '';
    for await (const delta of r.textStream) streamed += delta; // all steps' text
    if (error) throw error;
    assert.deepEqual(seen.sort(), ['Berlin', 'Paris']);
    const text = await r.text; // last step's text
    assert.ok(text.startsWith('echo:'), text);
    assert.ok(streamed.endsWith(text), streamed);
    assert.equal((await r.steps).length, 2);
  },

  // Multi-turn chat: feeding back `response.messages` makes the AI SDK (default store: true)
  // send the earlier assistant message as {type: "item_reference", id: "msg_..."}, so the
  // gateway must resolve output item ids it returned to this tenant before.
  async multiTurnItemReference(model) {
    const first = await generateText({ model: openai(model), prompt: 'first turn', maxRetries: 0 });
    assert.equal(first.text, 'echo: first turn');
    const second = await generateText({
      model: openai(model),
      messages: [
        { role: 'user', content: 'first turn' },
        ...first.response.messages,
        { role: 'user', content: 'second turn' },
      ],
      maxRetries: 0,
    });
    assert.equal(second.text, 'echo: second turn');
  },
};

let passed = 0;
let failed = 0;
const only = process.env.DGIDGI_ONLY ? process.env.DGIDGI_ONLY.split(',') : null;
for (const model of MODELS) {
  for (const [name, fn] of Object.entries(checks)) {
    if (only && !only.includes(name)) continue;
    const t0 = Date.now();
    try {
      await fn(model);
      passed++;
      console.log(`ok   ${name} [${model}] ${Date.now() - t0}ms`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${name} [${model}]: ${e?.stack ?? e}`);
      if (e?.cause) console.log('  cause:', e.cause);
    }
  }
}
console.log(`ai sdk responses: ${passed} checks passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
