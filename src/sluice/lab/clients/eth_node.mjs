// An Ethereum devp2p node for the lab: @ethereumjs/devp2p (npm) discovery (discv4) and RLPx + eth/68.
//
//   node eth_node.mjs server IP TCP UDP          listen; print {"event":"id",...} then one line per event
//   node eth_node.mjs client IP TCP UDP SERVER_ID SERVER_IP SERVER_TCP SERVER_UDP
//        discv4 bootstrap to the server (ping, pong, findnode, neighbors), RLPx connect (auth, ack,
//        Hello), eth Status both ways, GetBlockHeaders and its answer; print a result line
//
// Both sides use a random key, the mainnet chain config and genesis hash (no chain is synced: the
// Status exchange, GetBlockHeaders and its answer are what crosses the wire). Output: JSON lines.
import { randomBytes } from 'node:crypto'
import { Common, Mainnet } from '@ethereumjs/common'
import { DPT, ETH, EthMessageCodes, RLPx } from '@ethereumjs/devp2p'
import { bytesToHex, hexToBytes, intToBytes } from '@ethereumjs/util'

const [mode, ip, tcpArg, udpArg, serverId, serverIp, serverTcp, serverUdp] = process.argv.slice(2)
const tcp = Number(tcpArg)
const udp = Number(udpArg)
const key = randomBytes(32)
const common = new Common({ chain: Mainnet })
const genesis = hexToBytes('0xd4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3')
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')

const dpt = new DPT(key, {
  endpoint: { address: ip, udpPort: udp, tcpPort: tcp },
  refreshInterval: 600000,
  shouldGetDnsPeers: false,
})
const rlpx = new RLPx(key, {
  dpt: null, // no RLPx dialling of discovered peers: the client dials the server itself
  maxPeers: 5,
  capabilities: [ETH.eth68],
  common,
  listenPort: mode === 'server' ? tcp : null,
})
rlpx.events.on('error', (e) => out({ event: 'error', what: String(e) }))
rlpx.events.on('peer:error', (_p, e) => out({ event: 'peer_error', what: String(e) }))
dpt.events.on('error', (e) => out({ event: 'dpt_error', what: String(e) }))

const result = { event: 'result', discovered: false, hello: null, status: false, headers: 0 }

rlpx.events.on('peer:added', (peer) => {
  const eth = peer.getProtocols()[0]
  result.hello = { client: peer.getHelloMessage()?.clientId ?? '', protocols: peer.getHelloMessage()?.capabilities?.map((c) => `${c.name}/${c.version}`) }
  out({ event: 'peer', client: result.hello.client })
  eth.events.once('status', () => {
    result.status = true
    out({ event: 'status' })
    if (mode === 'client') {
      // GetBlockHeaders [request-id, [origin, amount, skip, reverse]]: the genesis header, then stop
      eth.sendMessage(EthMessageCodes.GET_BLOCK_HEADERS, [intToBytes(7), [intToBytes(0), intToBytes(1), intToBytes(0), intToBytes(0)]])
    }
  })
  eth.events.on('message', (code, payload) => {
    if (code === EthMessageCodes.GET_BLOCK_HEADERS) {
      eth.sendMessage(EthMessageCodes.BLOCK_HEADERS, [payload[0], []]) // no chain here: an empty answer
      out({ event: 'get_headers' })
    } else if (code === EthMessageCodes.BLOCK_HEADERS) {
      result.headers += 1
      out({ event: 'headers' })
      setTimeout(() => { out(result); peer.disconnect(0x08); setTimeout(() => process.exit(0), 300) }, 200)
    }
  })
  eth.sendStatus({ td: intToBytes(17179869184), bestHash: genesis, genesisHash: genesis, latestBlock: 0n })
})

if (mode === 'server') {
  await dpt.bind(udp, ip)
  rlpx.listen(tcp, ip)
  out({ event: 'id', id: bytesToHex(dpt.id) })
} else {
  await dpt.bind(udp, ip)
  await dpt.bootstrap({ address: serverIp, udpPort: Number(serverUdp), tcpPort: Number(serverTcp) })
  result.discovered = dpt.getPeers().length > 0
  out({ event: 'discovered', peers: dpt.getPeers().length })
  await rlpx.connect({ id: hexToBytes(serverId), address: serverIp, tcpPort: Number(serverTcp) })
  setTimeout(() => { out(result); process.exit(result.headers > 0 ? 0 : 1) }, 20000)
}
