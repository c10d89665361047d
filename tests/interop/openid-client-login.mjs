// A login against `lienthong demo` by openid-client (a certified relying party), used exactly
// as its documentation shows. The only option is allowInsecureRequests, because the demo
// serves plain HTTP on loopback; nothing else is special.
//
// openid-client does the protocol: discovery, PKCE, state, nonce, the code grant, ID token
// validation (signature by the JWKS, iss, aud, exp, nonce) and userinfo. This script plays the
// citizen's browser: it follows redirects by hand with a cookie jar and submits the HTML forms
// of the mock national IdP and of the broker's consent page.
//
// Usage: node openid-client-login.mjs ISSUER CLIENT_ID CLIENT_SECRET REDIRECT_URI CITIZEN_NUMBER
import * as client from 'openid-client'

const [issuer, clientId, clientSecret, redirectUri, citizen] = process.argv.slice(2)

const config = await client.discovery(new URL(issuer), clientId, clientSecret, undefined, {
  execute: [client.allowInsecureRequests],
})

const codeVerifier = client.randomPKCECodeVerifier()
const state = client.randomState()
const nonce = client.randomNonce()
const authorizationUrl = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope: 'openid profile citizen_id',
  code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
  code_challenge_method: 'S256',
  state,
  nonce,
})

// --- the browser -------------------------------------------------------------------------
const jar = new Map()
async function browse(url, init = {}) {
  const headers = new Headers(init.headers)
  if (jar.size) headers.set('cookie', [...jar].map(([k, v]) => `${k}=${v}`).join('; '))
  const res = await fetch(url, { ...init, headers, redirect: 'manual' })
  for (const c of res.headers.getSetCookie()) {
    const [pair] = c.split(';')
    const i = pair.indexOf('=')
    jar.set(pair.slice(0, i), pair.slice(i + 1))
  }
  return res
}
function hidden(html, name) {
  const m = html.match(new RegExp(`name="${name}" value="([^"]*)"`))
  if (!m) throw new Error(`no ${name} field in page:\n${html}`)
  return m[1]
}
function form(fields) {
  return { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields) }
}

let res = await browse(authorizationUrl)
const idpLogin = res.headers.get('location')
res = await browse(idpLogin)
const loginPage = await res.text()
res = await browse(idpLogin.split('?')[0], form({
  flow: hidden(loginPage, 'flow'), roster_number: citizen, password: 'matkhau-thu', otp: '123456', action: 'login',
}))
res = await browse(res.headers.get('location')) // back at the broker's /callback
if (res.status === 200) { // the broker asks for consent
  const consentPage = await res.text()
  res = await browse(new URL('consent', issuer + '/').href, form({ consent_id: hidden(consentPage, 'consent_id'), decision: 'allow' }))
}
const callback = res.headers.get('location')
if (!callback || !callback.startsWith(redirectUri)) throw new Error(`expected a redirect to the client, got ${res.status} ${callback}`)

// --- the relying party again ---------------------------------------------------------------
const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
  pkceCodeVerifier: codeVerifier,
  expectedState: state,
  expectedNonce: nonce,
  idTokenExpected: true,
})
const claims = tokens.claims()
const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub)
console.log(JSON.stringify({ claims, userinfo }))
