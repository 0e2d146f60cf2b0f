// An ocpp-rpc charger in strict mode: node charger.js URL IDENTITY SUBPROTOCOL [story|idle] [reconnect]
// Connects to URL/IDENTITY offering SUBPROTOCOL, runs its story (boot, status, authorize, one transaction with meter
// values, heartbeat) unless told "idle", answers the CSMS's CALLs, and prints one JSON line per answer and CALL, each
// connection opened ({"event": "open", "n": 1, ...}) and each CALL it sends with its unique id ({"event": "sent"}).
// "reconnect": a connection lost is opened again (a new one, the same identity; ocpp-rpc's own reconnect, every
// 0.1 to 0.5 s), CALLs made meanwhile wait for it; otherwise a connection lost stays closed.
// stdin: {"op": "call", "ref": 1, "action": "...", "params": {...}} sends one more CALL; end of stdin closes.
'use strict';
const {RPCClient, createRPCError} = require('ocpp-rpc');
const {emit, watch, commands, call, now, strictModeValidators} = require('./peer');

const [url, identity, protocol, mode = 'story', reconnect] = process.argv.slice(2);
const v16 = protocol === 'ocpp1.6';
const client = new RPCClient({
    endpoint: url, identity, protocols: [protocol], strictMode: true, strictModeValidators: strictModeValidators(),
    reconnect: reconnect === 'reconnect', callTimeoutMs: 10000,
    backoff: {initialDelay: 100, maxDelay: 500, factor: 2, randomisationFactor: 0},
});
watch(client, identity);
let opened = 0;
client.on('open', () => emit({event: 'open', identity, protocol: client.protocol, n: ++opened}));
client.on('disconnect', ({code, reason}) => emit({event: 'disconnected', identity, code, reason: String(reason ?? '')}));
client.on('call', ({outbound, payload}) => outbound && emit({event: 'sent', messageId: payload[1], action: payload[2]}));

const config16 = {HeartbeatInterval: '300', MeterValueSampleInterval: '60', NumberOfConnectors: '1'};
const variables201 = {'OCPPCommCtrlr.HeartbeatInterval': '300', 'SampledDataCtrlr.TxUpdatedInterval': '60'};

const status = (s) => v16
    ? {connectorId: 1, errorCode: 'NoError', status: s}
    : {timestamp: now(), connectorStatus: s, evseId: 1, connectorId: 1};

// The messages a TriggerMessage may ask for, sent once the trigger is answered.
const triggerable = {Heartbeat: () => ({}), StatusNotification: () => status('Available')};

// The charger's side of each CSMS-initiated CALL (valid responses of its version).
const handlers = v16 ? {
    GetConfiguration: ({key}) => ({
        configurationKey: Object.entries(config16).filter(([k]) => !key || key.includes(k))
            .map(([k, value]) => ({key: k, readonly: false, value})),
        unknownKey: (key ?? []).filter((k) => !(k in config16)),
    }),
    ChangeConfiguration: () => ({status: 'Accepted'}),
    RemoteStartTransaction: () => ({status: 'Accepted'}),
    RemoteStopTransaction: () => ({status: 'Accepted'}),
    Reset: () => ({status: 'Accepted'}),
    ChangeAvailability: () => ({status: 'Accepted'}),
    TriggerMessage: ({requestedMessage}) => ({status: requestedMessage in triggerable ? 'Accepted' : 'NotImplemented'}),
} : {
    GetVariables: ({getVariableData}) => ({
        getVariableResult: getVariableData.map(({component, variable}) => {
            const value = variables201[`${component.name}.${variable.name}`];
            return value === undefined
                ? {attributeStatus: 'UnknownVariable', component, variable}
                : {attributeStatus: 'Accepted', attributeValue: value, component, variable};
        }),
    }),
    SetVariables: ({setVariableData}) => ({
        setVariableResult: setVariableData.map(({component, variable}) => ({attributeStatus: 'Accepted', component, variable})),
    }),
    RequestStartTransaction: () => ({status: 'Accepted'}),
    RequestStopTransaction: () => ({status: 'Accepted'}),
    Reset: () => ({status: 'Accepted'}),
    ChangeAvailability: () => ({status: 'Accepted'}),
    TriggerMessage: ({requestedMessage}) => ({status: requestedMessage in triggerable ? 'Accepted' : 'NotImplemented'}),
};

for (const [action, handler] of Object.entries(handlers)) {
    client.handle(action, ({params}) => {
        const reply = handler(params);
        emit({event: 'call', action, params, reply});
        if (action === 'TriggerMessage' && reply.status === 'Accepted') {
            const message = params.requestedMessage;
            setImmediate(() => call(client, message, triggerable[message](), {triggered: true}));
        }
        return reply;
    });
}
client.handle(({method, params}) => {
    emit({event: 'unhandled', action: method, params});
    throw createRPCError('NotImplemented', `charger.js has no handler for ${method}`);
});

function meterValue(wh) {
    return v16
        ? [{timestamp: now(), sampledValue: [{value: String(wh), measurand: 'Energy.Active.Import.Register', unit: 'Wh'}]}]
        : [{timestamp: now(), sampledValue: [{value: wh, measurand: 'Energy.Active.Import.Register'}]}];
}

async function story16() {
    await call(client, 'BootNotification', {chargePointVendor: 'ocpp-rpc', chargePointModel: 'Interop-16'});
    await call(client, 'StatusNotification', status('Available'));
    await call(client, 'Authorize', {idTag: 'TAG-OK'});
    const start = await call(client, 'StartTransaction', {connectorId: 1, idTag: 'TAG-OK', meterStart: 1000, timestamp: now()});
    const transactionId = start?.transactionId;
    await call(client, 'StatusNotification', status('Charging'));
    await call(client, 'MeterValues', {connectorId: 1, transactionId, meterValue: meterValue(1500)});
    await call(client, 'StopTransaction', {transactionId, meterStop: 2000, timestamp: now(), idTag: 'TAG-OK', reason: 'Local'});
    await call(client, 'StatusNotification', status('Available'));
    await call(client, 'Heartbeat', {});
}

async function story201() {
    const idToken = {idToken: 'TAG-OK', type: 'ISO14443'};
    const tx = (seqNo, eventType, triggerReason, info, wh, extra = {}) => call(client, 'TransactionEvent', {
        eventType, timestamp: now(), triggerReason, seqNo, transactionInfo: {transactionId: 'RPC-TX-1', ...info},
        meterValue: meterValue(wh), ...extra,
    });
    await call(client, 'BootNotification', {chargingStation: {model: 'Interop-201', vendorName: 'ocpp-rpc'}, reason: 'PowerUp'});
    await call(client, 'StatusNotification', status('Available'));
    await call(client, 'Authorize', {idToken});
    await tx(0, 'Started', 'Authorized', {chargingState: 'Charging'}, 1000, {idToken, evse: {id: 1, connectorId: 1}});
    await call(client, 'StatusNotification', status('Occupied'));
    await call(client, 'MeterValues', {evseId: 1, meterValue: meterValue(1200)});
    await tx(1, 'Updated', 'MeterValuePeriodic', {chargingState: 'Charging'}, 1500);
    await tx(2, 'Ended', 'StopAuthorized', {stoppedReason: 'Local'}, 2000);
    await call(client, 'StatusNotification', status('Available'));
    await call(client, 'Heartbeat', {});
}

async function main() {
    try {
        await client.connect();
    } catch (err) {
        emit({event: 'connect_failed', error: String(err.message ?? err)});
        process.exit(1);
    }
    if (mode === 'story') {
        await (v16 ? story16() : story201());
        emit({event: 'story_done'});
    }
    await commands(async ({op, action, params}) => {
        if (op !== 'call') throw new Error(`unknown op ${op}`);
        return {response: await client.call(action, params)};
    });
    await client.close({code: 1000});
    process.exit(0);
}

main();
