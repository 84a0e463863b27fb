// The Vercel AI SDK, unchanged, against dgidgi in front of local fakes of each wire format:
// its OpenAI provider (chat completions, embeddings) and its Anthropic provider (Messages API),
// each to an upstream of its own format and of another; text, streams, tools, structured output
// and embeddings.
// Run by tests/node_clients.rs with DGIDGI_BASE_URL and DGIDGI_KEY; exits non-zero on the
// first failed check.

import assert from 'node:assert/strict';
import { createAnthropic } from '@ai-sdk/anthropic';
import { createOpenAI } from '@ai-sdk/openai';
import { embed, embedMany, generateText, jsonSchema, Output, stepCountIs, streamText, tool } from 'ai';

const base = process.env.DGIDGI_BASE_URL;
const apiKey = process.env.DGIDGI_KEY;
const openai = createOpenAI({ baseURL: `${base}/v1`, apiKey });
const anthropic = createAnthropic({ baseURL: `${base}/v1`, apiKey });

// Each provider of the SDK in front of its own format and another.
const models = {
  'openai → anthropic': openai.chat('anthropic/claude-fake'),
  'openai → openai': openai.chat('openai-fake/gpt-fake'),
  'openai → gemini': openai.chat('gemini/gemini-fake'),
  'anthropic → anthropic': anthropic('anthropic/claude-fake'),
  'anthropic → openai': anthropic('openai-fake/gpt-fake'),
};

const form = jsonSchema({
  type: 'object',
  properties: { zeta: { type: 'string' }, alpha: { type: 'integer' }, middle: { type: 'boolean' } },
  required: ['zeta', 'alpha', 'middle'],
  additionalProperties: false,
});

const weather = tool({
  description: 'Weather of a city',
  inputSchema: jsonSchema({
    type: 'object',
    properties: { city: { type: 'string' } },
    required: ['city'],
    additionalProperties: false,
  }),
  execute: async ({ city }) => `sunny in ${city}`,
});

let checks = 0;
for (const [name, model] of Object.entries(models)) {
  const text = await generateText({ model, prompt: 'hello ai sdk', maxRetries: 0 });
  assert.equal(text.text, 'echo: hello ai sdk', name);
  assert.ok(text.usage.inputTokens > 0 && text.usage.outputTokens > 0, name);

  const stream = streamText({ model, prompt: 'stream please', maxRetries: 0 });
  let streamed = '';
  for await (const piece of stream.textStream) streamed += piece;
  assert.equal(streamed, 'echo: stream please', name);
  assert.ok((await stream.usage).outputTokens > 0, name);

  // The tool loop: the fakes call the tool for Paris and Berlin, then answer.
  const looped = await generateText({
    model,
    prompt: 'weather in Paris and Berlin?',
    tools: { get_weather: weather },
    stopWhen: stepCountIs(3),
    maxRetries: 0,
  });
  const calls = looped.steps[0].toolCalls.map((call) => call.input.city);
  assert.deepEqual(calls, ['Paris', 'Berlin'], name);
  assert.ok(looped.text.startsWith('echo'), `${name}: ${looped.text}`);
  checks += 3;
}

// Structured output where each target has a mechanism of its own (OpenAI's json_schema,
// translated to Anthropic's output_config.format and Gemini's responseJsonSchema).
for (const name of ['openai → openai', 'openai → anthropic', 'openai → gemini', 'anthropic → anthropic']) {
  const structured = await generateText({
    model: models[name],
    prompt: 'fill the form',
    output: Output.object({ schema: form }),
    maxRetries: 0,
  });
  assert.deepEqual(structured.output, { zeta: 'text', alpha: 7, middle: true }, name);
  checks += 1;
}

// Embeddings through the OpenAI provider, to an OpenAI-format upstream and translated to
// Gemini's and Cohere's (the fakes answer (length + i) / 4 for each of a text's values).
for (const id of ['openai-fake/text-embed-fake', 'gemini/gemini-embed-fake', 'cohere/embed-fake']) {
  const model = openai.embedding(id);
  const one = await embed({ model, value: 'alpha', maxRetries: 0 });
  assert.deepEqual(one.embedding, [1.25, 1.5, 1.75, 2], id);
  const many = await embedMany({ model, values: ['alpha', 'beta gamma'], maxRetries: 0 });
  assert.deepEqual(many.embeddings[1], [2.5, 2.75, 3, 3.25], id);
  assert.ok(many.usage.tokens > 0, id);
  checks += 2;
}

console.log(`ai sdk: ${checks} checks passed`);
