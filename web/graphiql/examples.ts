import type { GraphiQLProps } from 'graphiql';

type TabDefinition = NonNullable<GraphiQLProps['defaultTabs']>[number];

/** The tabs a first visit opens with: one per main flow of the contract. */
export const exampleTabs: TabDefinition[] = [
  {
    query: `# Who am I? Sign in above first; the token is sent as Authorization: Bearer.
query Me {
  me {
    id
    email
    phone
    displayName
    totpEnabled
  }
}
`,
  },
  {
    query: `# Devices I own or that are shared with me, newest binding first.
query ListDevices($first: Int, $after: String, $filter: DeviceFilter) {
  devices(first: $first, after: $after, filter: $filter) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges {
      node { id serial model name status lastSeenAt channels role permissions }
    }
  }
}
`,
    variables: JSON.stringify({ first: 20 }, null, 2),
  },
  {
    query: `# Bind a device with the serial and the 6-letter verification code on its label.
mutation BindDevice($serial: String!, $verificationCode: String!, $name: String) {
  bindDevice(serial: $serial, verificationCode: $verificationCode, name: $name) {
    id
    serial
    name
    status
    role
  }
}
`,
    variables: JSON.stringify({ serial: 'DS-2CD2143G2-I20230101AAWRJ12345678', verificationCode: 'ABCDEF', name: 'Front door' }, null, 2),
  },
  {
    query: `# Share a device with another account (by its email or phone).
mutation ShareDevice($deviceId: ID!, $grantee: String!, $permissions: [Permission!]!) {
  grantShare(deviceId: $deviceId, grantee: $grantee, permissions: $permissions) {
    id
    permissions
    expiresAt
    grantee { id displayName }
  }
}
`,
    variables: JSON.stringify({ deviceId: '', grantee: 'friend@example.com', permissions: ['LIVE_VIEW', 'ALARMS'] }, null, 2),
  },
  {
    query: `# Unbind a device; the account password is asked again (step-up).
mutation UnbindDevice($id: ID!, $password: String!) {
  unbindDevice(id: $id, password: $password) {
    deviceId
    ok
    error
    revokedShares
  }
}
`,
    variables: JSON.stringify({ id: '', password: '' }, null, 2),
  },
  {
    query: `# Live alarms from every device I may see (runs over WebSocket). Press run and wait.
subscription LiveAlarms {
  alarms {
    id
    type
    rawType
    channel
    startedAt
    device { id name }
  }
}
`,
  },
];
