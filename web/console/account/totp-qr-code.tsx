import { QRCodeSVG } from 'qrcode.react';

/** The otpauth URL as a QR code (this module and its library load only when enrolment starts). */
export function TotpQrCode({ url }: { url: string }) {
  return <QRCodeSVG value={url} size={192} marginSize={2} title="QR code for your authenticator app" role="img" />;
}
