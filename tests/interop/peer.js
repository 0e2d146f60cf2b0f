// What charger.js and csms.js share: one JSON line on stdout per thing that happened, commands as JSON lines on
// stdin, and every strict-mode or framing complaint of ocpp-rpc reported (the Python test fails on any of them).
'use strict';
const readline = require('node:readline');
const {createValidator} = require('ocpp-rpc');

function emit(event) {
    process.stdout.write(JSON.stringify(event) + '\n');
}

function errorOf(err) {
    return {code: err.rpcErrorCode ?? err.name ?? 'Error', message: String(err.message ?? err)};
}

// ocpp-rpc's own verdicts on what the other side sent (or on what we were about to send): never expected here.
function watch(client, identity) {
    client.on('strictValidationFailure', (e) => emit({
        event: 'strict_failure', identity, method: e.method, outbound: e.outbound, isCall: e.isCall,
        messageId: e.messageId, error: String(e.error?.message ?? e.error), params: e.params, result: e.result,
    }));
    client.on('badMessage', (e) => emit({
        event: 'bad_message', identity, error: String(e.error?.message ?? e.error),
        frame: e.buffer?.toString('utf8'), response: e.response,
    }));
    client.on('close', (e) => emit({event: 'closed', identity, code: e.code, reason: String(e.reason ?? '')}));
}

// Each stdin line is one command {op, ref, ...}; ``run`` returns the line to print for it (with the same ref).
function commands(run) {
    const rl = readline.createInterface({input: process.stdin});
    rl.on('line', async (line) => {
        const cmd = JSON.parse(line);
        try {
            emit({event: 'done', ref: cmd.ref, ...(await run(cmd))});
        } catch (err) {
            emit({event: 'done', ref: cmd.ref, error: errorOf(err)});
        }
    });
    return new Promise((resolve) => rl.on('close', resolve));
}

// One CALL, its answer printed as {event: 'answer', action, request, response | error}.
async function call(client, action, params, extra = {}) {
    try {
        const response = await client.call(action, params);
        emit({event: 'answer', ...extra, action, request: params, response});
        return response;
    } catch (err) {
        emit({event: 'answer', ...extra, action, request: params, error: errorOf(err)});
        return null;
    }
}

const now = () => new Date().toISOString();

// ocpp-rpc 2.2.1 ships its OCPP 2.1 schemas with the ids urn:<Action>Request/Response but looks them up as
// urn:<Action>.req/.conf, so its strict mode refuses every 2.1 message (upstream: mikuso/ocpp-rpc pull request 94).
// The same schemas under the ids it looks up: strict mode for 2.1 as for 1.6 and 2.0.1. (Their enum definitions carry
// "additionalProperties", meaningless on a string, which Ajv warns about once per schema: dropped.)
function strictModeValidators() {
    const stringsWithoutAdditional = (definitions = {}) => Object.fromEntries(Object.entries(definitions).map(
        ([name, {additionalProperties, ...rest}]) => [name, rest.type === 'object' ? {additionalProperties, ...rest} : rest]));
    const schemas = require('ocpp-rpc/lib/schemas/ocpp2_1.json').map((schema) => ({
        ...schema,
        $id: schema.$id.replace(/Request$/, '.req').replace(/Response$/, '.conf'),
        definitions: stringsWithoutAdditional(schema.definitions),
    }));
    return [createValidator('ocpp2.1', schemas)];
}

module.exports = {emit, errorOf, watch, commands, call, now, strictModeValidators};
