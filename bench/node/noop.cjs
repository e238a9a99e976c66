// The sandboxed no-op processor.
module.exports = async () => null;
