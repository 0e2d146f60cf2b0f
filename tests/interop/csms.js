// An ocpp-rpc CSMS in strict mode: node csms.js SUBPROTOCOL[,SUBPROTOCOL...] [OPTIONS]
// Listens on 127.0.0.1 (a free port, printed as {"event": "listening", "port": N}), accepts any identity, answers
// every CALL with a valid response of its version and prints each as {"event": "call", identity, messageId, action,
// params, reply}. OPTIONS, JSON: {"port": N} listens on that port instead (a CSMS started again where it was);
// {"answers": {"Action": reply}} answers those actions with that reply, not the built-in one (checked against the
// schema all the same); {"hold": [{"action": "...", "key": value, ...}]} answers nothing to a CALL of that action
// whose params have those top-level values (printed with "held": true: a CALL left unanswered when the link drops).
// stdin: {"op": "call", "ref": 1, "identity": "...", "action": "...", "params": {...}} sends a CALL to that
// charger and prints its answer as {"event": "done", "ref": 1, "response": ...}; end of stdin stops the server.
'use strict';
const {RPCServer, createRPCError, NOREPLY} = require('ocpp-rpc');
const {emit, watch, commands, now, strictModeValidators} = require('./peer');

const protocols = process.argv[2].split(',');
const {port = 0, answers = {}, hold = []} = JSON.parse(process.argv[3] ?? '{}');
const held = (method, params) => hold.some(({action, ...values}) => action === method
    && Object.entries(values).every(([k, v]) => params?.[k] === v));
// No answer, ever: settled (without a reply) only when the connection goes, so that closing does not wait for it.
const never = (signal) => new Promise((resolve) => signal.addEventListener('abort', () => resolve(NOREPLY)));
const server = new RPCServer({protocols, strictMode: true, strictModeValidators: strictModeValidators(), callTimeoutMs: 10000});
const clients = new Map();
let nextTransactionId = 501;

const verdict = (tag) => (tag.startsWith('BLOCK') ? 'Blocked' : 'Accepted');
const ack = () => ({});

const handlers16 = {
    BootNotification: () => ({status: 'Accepted', currentTime: now(), interval: 300}),
    Heartbeat: () => ({currentTime: now()}),
    StatusNotification: ack,
    MeterValues: ack,
    DiagnosticsStatusNotification: ack,
    FirmwareStatusNotification: ack,
    Authorize: ({idTag}) => ({idTagInfo: {status: verdict(idTag)}}),
    StartTransaction: ({idTag}) => ({transactionId: nextTransactionId++, idTagInfo: {status: verdict(idTag)}}),
    StopTransaction: () => ({idTagInfo: {status: 'Accepted'}}),
    DataTransfer: () => ({status: 'Accepted'}),
};

const handlers2 = {
    BootNotification: () => ({status: 'Accepted', currentTime: now(), interval: 300}),
    Heartbeat: () => ({currentTime: now()}),
    StatusNotification: ack,
    MeterValues: ack,
    NotifyEvent: ack,
    NotifyReport: ack,
    LogStatusNotification: ack,
    FirmwareStatusNotification: ack,
    SecurityEventNotification: ack,
    Authorize: ({idToken}) => ({idTokenInfo: {status: verdict(idToken.idToken)}}),
    TransactionEvent: ({idToken}) => (idToken ? {idTokenInfo: {status: verdict(idToken.idToken)}} : {}),
    DataTransfer: () => ({status: 'Accepted'}),
};

server.on('client', (client) => {
    const identity = client.identity;
    clients.set(identity, client);
    watch(client, identity);
    client.on('close', () => clients.get(identity) === client && clients.delete(identity));
    const handlers = client.protocol === 'ocpp1.6' ? handlers16 : handlers2;
    for (const [action, handler] of Object.entries(handlers)) {
        client.handle(action, ({messageId, params, signal}) => {
            if (held(action, params)) {
                emit({event: 'call', identity, messageId, action, params, reply: null, held: true});
                return never(signal);
            }
            const reply = answers[action] ?? handler(params);
            emit({event: 'call', identity, messageId, action, params, reply});
            return reply;
        });
    }
    client.handle(({messageId, method, params}) => {
        emit({event: 'unhandled', identity, messageId, action: method, params});
        throw createRPCError('NotImplemented', `csms.js has no handler for ${method}`);
    });
    emit({event: 'connected', identity, protocol: client.protocol});
});

async function main() {
    const http = await server.listen(port, '127.0.0.1');
    emit({event: 'listening', port: http.address().port});
    await commands(async ({op, identity, action, params}) => {
        const client = clients.get(identity);
        if (op !== 'call') throw new Error(`unknown op ${op}`);
        if (!client) throw new Error(`${identity} is not connected`);
        return {identity, action, response: await client.call(action, params)};
    });
    await server.close({code: 1001});
    process.exit(0);
}

main();
