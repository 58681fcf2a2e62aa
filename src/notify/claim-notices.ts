/**
 * Notice templates for device claims (reclaiming a second-hand device). Each returns the kind,
 * subject and body of one message; the caller addresses it and queues it in the transaction that
 * makes the change. No template names the other party: the owner never learns who claims the
 * device, the claimant never learns whose it was.
 */

export interface NoticeText {
  kind: string;
  subject: string;
  body: string;
}

/** How a device is named in a notice: the owner's name for it (owner side only) and its serial. */
const ownerLabel = (d: { name: string; serial: string }) => (d.name === d.serial ? d.serial : `${d.name} (${d.serial})`);
/** The claimant side sees only what is printed on the device: serial and model. */
const plainLabel = (d: { serial: string; model: string | null }) => `${d.serial}${d.model ? ` (${d.model})` : ''}`;

const iso = (d: Date) => d.toISOString();

function refuseHow(claimId: string, publicUrl: string): string {
  return (
    `To refuse it, sign in at ${publicUrl} and cancel the claim, for example with this GraphQL mutation:\n` +
    `  mutation { cancelClaim(id: "${claimId}") }\n` +
    'If you sold or gave the device away, you need do nothing. If it was lost or stolen, refuse the claim: ' +
    'the claimant then cannot claim it again for 30 days, and you keep the device.\n'
  );
}

/** To the owner (every contact), at once: someone used the device's label code to claim it. */
export function claimMadeNotice(o: { device: { name: string; serial: string }; claimId: string; at: Date; completesAt: Date; publicUrl: string }): NoticeText {
  return {
    kind: 'device-claim-made',
    subject: `Someone is claiming your device ${o.device.name}`,
    body:
      `At ${iso(o.at)} someone claimed your device ${ownerLabel(o.device)} with the verification code printed on its label.\n` +
      `Unless you refuse the claim, the device leaves your account and moves to theirs at ${iso(o.completesAt)}; ` +
      'its shares then end. Until then you keep full use of it.\n\n' +
      refuseHow(o.claimId, o.publicUrl),
  };
}

/** To the new owner after a transfer: a claim was already running on the device, and when it completes. */
export function claimInheritedNotice(o: { device: { name: string; serial: string }; claimId: string; now: Date; completesAt: Date; publicUrl: string }): NoticeText {
  const leftH = Math.max(0, Math.round((o.completesAt.getTime() - o.now.getTime()) / 3_600_000));
  return {
    kind: 'device-claim-inherited',
    subject: `A claim is running on the device ${o.device.serial} you received`,
    body:
      `The device ${ownerLabel(o.device)}, just transferred to your account, was already claimed by someone holding it ` +
      `(with the code on its label). Unless you refuse the claim, the device moves to their account at ${iso(o.completesAt)}` +
      `${leftH > 0 ? ` (in about ${leftH} hours)` : ''}.\n\n` +
      refuseHow(o.claimId, o.publicUrl),
  };
}

/** To the claimant: the device is now in their account (window passed, the owner unbound it, or it was not bound). */
export function claimCompletedNotice(o: { device: { serial: string; model: string | null }; at: Date }): NoticeText {
  return {
    kind: 'device-claim-completed',
    subject: `The device ${o.device.serial} is now yours`,
    body: `Your claim on the device ${plainLabel(o.device)} completed at ${iso(o.at)}. It is now in your device list.\n`,
  };
}

/** To the former owner (every contact): the window passed without a refusal and the device moved. */
export function claimReclaimedNotice(o: { device: { name: string; serial: string }; at: Date }): NoticeText {
  return {
    kind: 'device-reclaimed',
    subject: `Your device ${o.device.name} was reclaimed`,
    body:
      `The claim on your device ${ownerLabel(o.device)} was not refused, so at ${iso(o.at)} the device left your account ` +
      'for the account of the person holding it. Its shares have ended. Alarms it raised while it was yours are not shown to the new holder.\n',
  };
}

/** To the claimant: the owner refused. */
export function claimRefusedNotice(o: { device: { serial: string; model: string | null }; at: Date; blockedUntil: Date }): NoticeText {
  return {
    kind: 'device-claim-refused',
    subject: `Your claim on the device ${o.device.serial} was refused`,
    body:
      `The account the device ${plainLabel(o.device)} is bound to refused your claim at ${iso(o.at)}. ` +
      `You cannot claim it again before ${iso(o.blockedUntil)}. If you bought the device, ask the seller to unbind it.\n`,
  };
}

/** To the owner (every contact): the claimant withdrew. */
export function claimWithdrawnNotice(o: { device: { name: string; serial: string }; at: Date }): NoticeText {
  return {
    kind: 'device-claim-withdrawn',
    subject: `The claim on your device ${o.device.name} was withdrawn`,
    body: `The claim on your device ${ownerLabel(o.device)} was withdrawn at ${iso(o.at)}. The device stays in your account.\n`,
  };
}

/** To a grantee whose share ended because the device was reclaimed. */
export function claimShareEndedNotice(o: { devices: Array<{ name: string; serial: string }> }): NoticeText {
  const one = o.devices.length === 1;
  return {
    kind: 'share-ended',
    subject: one ? 'A device is no longer shared with you' : `${o.devices.length} devices are no longer shared with you`,
    body: `Your access to ${one ? 'this device' : 'these devices'} ended because ${one ? 'it' : 'they'} passed to a new holder:\n${o.devices.map((d) => `- ${ownerLabel(d)}`).join('\n')}\n`,
  };
}
