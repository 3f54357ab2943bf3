import React from "react";

type Props = { label: string };

export function Button({ label }: Props) {
  const onClick = () => {
    console.log(label);
  };
  return <button onClick={onClick}>{label}</button>;
}

export const Card = (props: Props) => {
  return <div className="card">{props.label}</div>;
};

export class Panel extends React.Component<Props> {
  render() {
    return <section>{this.props.label}</section>;
  }
}
