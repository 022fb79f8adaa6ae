-- USBTMC and USB488 for Wireshark and tshark, shipped with TMC Console.
--
--   tshark -X lua_script:$(tmc trace --dissector-path) -r trace.pcapng
--   wireshark -X lua_script:$(tmc trace --dissector-path) trace.pcapng
--
-- Or copy this file into Wireshark's personal Lua plugins folder (Help > About > Folders).
--
-- Decodes the Bulk-OUT and Bulk-IN headers (USBTMC 1.0 section 3.2, Tables 1-4, 8-9;
-- USB488 1.0 Table 1), the class-specific control requests and their replies (USBTMC 1.0
-- Tables 15-16, section 4.2; USB488 1.0 Tables 9-10, section 4.3) and the interrupt-IN
-- notifications (USB488 1.0 section 3.4, Table 6). Wireshark hands a transfer to this
-- dissector when the capture holds the configuration descriptor that gives its interface
-- class FE (application specific): TMC Console's exports start with it, and usbmon and
-- USBPcap captures contain it when capturing started before the device was opened (or was
-- plugged in). Class FE is shared with DFU (subclass 01) and IrDA (02), so a Bulk transfer is
-- decoded only when its header checks out (bTagInverse), and control requests by their
-- USBTMC/USB488 numbers.

local usbtmc = Proto("usbtmc", "USB Test and Measurement Class")

local MSG_OUT = {
  [1] = "DEV_DEP_MSG_OUT", [2] = "REQUEST_DEV_DEP_MSG_IN", [126] = "VENDOR_SPECIFIC_OUT",
  [127] = "REQUEST_VENDOR_SPECIFIC_IN", [128] = "TRIGGER",
}
local MSG_IN = { [2] = "DEV_DEP_MSG_IN", [127] = "VENDOR_SPECIFIC_IN" }
local REQUESTS = {
  [1] = "INITIATE_ABORT_BULK_OUT", [2] = "CHECK_ABORT_BULK_OUT_STATUS", [3] = "INITIATE_ABORT_BULK_IN",
  [4] = "CHECK_ABORT_BULK_IN_STATUS", [5] = "INITIATE_CLEAR", [6] = "CHECK_CLEAR_STATUS",
  [7] = "GET_CAPABILITIES", [64] = "INDICATOR_PULSE", [128] = "READ_STATUS_BYTE", [160] = "REN_CONTROL",
  [161] = "GO_TO_LOCAL", [162] = "LOCAL_LOCKOUT",
}
local STATUS = {
  [0x01] = "STATUS_SUCCESS", [0x02] = "STATUS_PENDING", [0x20] = "STATUS_INTERRUPT_IN_BUSY",
  [0x80] = "STATUS_FAILED", [0x81] = "STATUS_TRANSFER_NOT_IN_PROGRESS",
  [0x82] = "STATUS_SPLIT_NOT_IN_PROGRESS", [0x83] = "STATUS_SPLIT_IN_PROGRESS",
}
-- IEEE 488.2 section 11.2, the status byte's bits (USB488 carries it in READ_STATUS_BYTE and SRQ).
local STB_BITS = { [7] = "OPR", [6] = "RQS/MSS", [5] = "ESB", [4] = "MAV", [3] = "QUES", [2] = "EAV",
                   [1] = "DEV1", [0] = "DEV0" }

local msg_names = {}
for k, v in pairs(MSG_OUT) do msg_names[k] = v end
for k, v in pairs(MSG_IN) do msg_names[k] = v end

local F = {
  msgid = ProtoField.uint8("usbtmc.msgid", "MsgID", base.DEC, msg_names),
  btag = ProtoField.uint8("usbtmc.btag", "bTag", base.DEC),
  btag_inverse = ProtoField.uint8("usbtmc.btag_inverse", "bTagInverse", base.HEX),
  transfer_size = ProtoField.uint32("usbtmc.transfer_size", "TransferSize", base.DEC),
  attributes = ProtoField.uint8("usbtmc.attributes", "bmTransferAttributes", base.HEX),
  eom = ProtoField.bool("usbtmc.eom", "EOM", 8, nil, 0x01),
  termchar_enabled = ProtoField.bool("usbtmc.termchar_enabled", "TermCharEnabled", 8, nil, 0x02),
  termchar = ProtoField.uint8("usbtmc.termchar", "TermChar", base.HEX),
  data = ProtoField.bytes("usbtmc.data", "Message bytes"),
  text = ProtoField.string("usbtmc.text", "Message text"),
  continued = ProtoField.bytes("usbtmc.continued", "Continued message bytes (no header)"),
  request = ProtoField.uint8("usbtmc.request", "bRequest", base.DEC, REQUESTS),
  wvalue = ProtoField.uint16("usbtmc.wvalue", "wValue", base.HEX),
  windex = ProtoField.uint16("usbtmc.windex", "wIndex", base.HEX),
  wlength = ProtoField.uint16("usbtmc.wlength", "wLength", base.DEC),
  status = ProtoField.uint8("usbtmc.status", "USBTMC_status", base.HEX, STATUS),
  nbytes = ProtoField.uint32("usbtmc.nbytes", "NBYTES_TXD/RXD", base.DEC),
  stb = ProtoField.uint8("usbtmc.stb", "Status byte", base.HEX),
  notify1 = ProtoField.uint8("usbtmc.notify1", "bNotify1", base.HEX),
  notify = ProtoField.string("usbtmc.notify", "Notification"),
  capabilities = ProtoField.bytes("usbtmc.capabilities", "Capabilities"),
}
usbtmc.fields = F

local f_urb_type = Field.new("usb.urb_type")
local f_request_in = Field.new("usb.request_in")
local f_direction = Field.new("usb.endpoint_address.direction")

-- bRequest of each control request, by its frame number, so the reply can be decoded.
local requests_by_frame = {}

local function stb_text(stb)
  local names = {}
  for bit = 7, 0, -1 do
    if bit32.band(stb, bit32.lshift(1, bit)) ~= 0 then names[#names + 1] = STB_BITS[bit] end
  end
  if #names == 0 then return string.format("0x%02X", stb) end
  return string.format("0x%02X (%s)", stb, table.concat(names, ", "))
end

local function printable(tvb)
  local s = tvb:raw()
  return (s:gsub("\n", "\\n"):gsub("\r", "\\r"):gsub("[^\32-\126\\]", "."))
end

local function is_submit()
  local t = f_urb_type()
  return t ~= nil and t.value == 0x53 -- 'S'
end

local function is_in()
  local d = f_direction()
  return d ~= nil and d.value == 1
end

local function dissect_bulk(tvb, pinfo, tree)
  local len = tvb:len()
  if len == 0 then return 0 end
  local incoming = is_in()
  local names = incoming and MSG_IN or MSG_OUT
  local msgid = tvb(0, 1):uint()
  local valid = len >= 12 and names[msgid] ~= nil
    and bit32.bxor(tvb(1, 1):uint(), 0xFF) == tvb(2, 1):uint()
  pinfo.cols.protocol = "USBTMC"
  if not valid then
    -- The rest of a Bulk-IN transfer read in more than one piece carries no header.
    if incoming then
      local sub = tree:add(usbtmc, tvb(), "USBTMC Bulk-IN continuation")
      sub:add(F.continued, tvb())
      pinfo.cols.info = string.format("DEV_DEP_MSG_IN continued, %d bytes", len)
      return len
    end
    return 0
  end
  local sub = tree:add(usbtmc, tvb(0, math.min(len, 12)), "USBTMC " .. names[msgid])
  sub:add(F.msgid, tvb(0, 1))
  sub:add(F.btag, tvb(1, 1))
  sub:add(F.btag_inverse, tvb(2, 1))
  local btag = tvb(1, 1):uint()
  local info = string.format("%s bTag %d", names[msgid], btag)
  if msgid == 128 then -- USB488 TRIGGER: no TransferSize
    pinfo.cols.info = info
    return len
  end
  local size = tvb(4, 4):le_uint()
  sub:add_le(F.transfer_size, tvb(4, 4))
  info = info .. string.format(" TransferSize %d", size)
  local attrs = tvb(8, 1)
  sub:add(F.attributes, attrs)
  if msgid == 1 or (incoming and msgid == 2) then
    sub:add(F.eom, attrs)
    if bit32.band(attrs:uint(), 1) ~= 0 then info = info .. " EOM" end
    if incoming and bit32.band(attrs:uint(), 2) ~= 0 then info = info .. " (ended on TermChar)" end
  elseif msgid == 2 then
    sub:add(F.termchar_enabled, attrs)
    if bit32.band(attrs:uint(), 2) ~= 0 then
      sub:add(F.termchar, tvb(9, 1))
      info = info .. string.format(" TermChar 0x%02X", tvb(9, 1):uint())
    end
  end
  if (msgid == 1 or msgid == 2 and incoming or msgid == 126 or msgid == 127 and incoming) and len > 12 then
    local body = tvb(12, math.min(size, len - 12))
    sub:add(F.data, body)
    local text = printable(body)
    sub:add(F.text, body, text)
    info = info .. ": " .. (text:len() > 60 and text:sub(1, 60) .. "..." or text)
  end
  pinfo.cols.info = info
  return len
end

local function dissect_control(tvb, pinfo, tree)
  local len = tvb:len()
  pinfo.cols.protocol = "USBTMC"
  if is_submit() then
    -- The setup packet without bmRequestType: bRequest, wValue, wIndex, wLength.
    if len < 7 then return 0 end
    local request = tvb(0, 1):uint()
    if REQUESTS[request] == nil then return 0 end
    requests_by_frame[pinfo.number] = request
    local sub = tree:add(usbtmc, tvb(0, 7), "USBTMC " .. REQUESTS[request] .. " request")
    sub:add(F.request, tvb(0, 1))
    sub:add_le(F.wvalue, tvb(1, 2))
    sub:add_le(F.windex, tvb(3, 2))
    sub:add_le(F.wlength, tvb(5, 2))
    local value = tvb(1, 2):le_uint()
    local info = REQUESTS[request] .. " request"
    if request == 1 or request == 3 then
      info = info .. string.format(" bTag %d", bit32.band(value, 0xFF))
      sub:add(F.btag, tvb(1, 1))
    elseif request == 128 then
      info = info .. string.format(" bTag %d", bit32.band(value, 0x7F))
      sub:add(F.btag, tvb(1, 1))
    elseif request == 160 then
      info = info .. (value ~= 0 and " (assert REN)" or " (release REN)")
    end
    pinfo.cols.info = info
    return len
  end
  local ref = f_request_in()
  local request = ref and requests_by_frame[ref.value]
  if request == nil or len < 1 then return 0 end
  local sub = tree:add(usbtmc, tvb(), "USBTMC " .. REQUESTS[request] .. " response")
  sub:add(F.request, request):set_generated()
  sub:add(F.status, tvb(0, 1))
  local status = STATUS[tvb(0, 1):uint()] or string.format("0x%02X", tvb(0, 1):uint())
  local info = string.format("%s response: %s", REQUESTS[request], status)
  if (request == 2 or request == 4) and len >= 8 then
    sub:add_le(F.nbytes, tvb(4, 4))
    info = info .. string.format(", %s %d", request == 4 and "NBYTES_TXD" or "NBYTES_RXD", tvb(4, 4):le_uint())
  elseif request == 128 and len >= 3 then
    sub:add(F.btag, tvb(1, 1))
    sub:add(F.stb, tvb(2, 1))
    info = info .. string.format(", bTag %d, STB %s", tvb(1, 1):uint(), stb_text(tvb(2, 1):uint()))
  elseif request == 7 then
    sub:add(F.capabilities, tvb())
  end
  pinfo.cols.info = info
  return len
end

local function dissect_interrupt(tvb, pinfo, tree)
  local len = tvb:len()
  if len < 2 then return 0 end
  pinfo.cols.protocol = "USB488"
  local notify = tvb(0, 1):uint()
  local sub = tree:add(usbtmc, tvb(), "USB488 interrupt-IN notification")
  sub:add(F.notify1, tvb(0, 1))
  sub:add(F.stb, tvb(1, 1))
  local stb = stb_text(tvb(1, 1):uint())
  local info
  if notify == 0x81 then
    info = "SRQ: STB " .. stb
  elseif bit32.band(notify, 0x80) ~= 0 then
    sub:add(F.btag, tvb(0, 1), bit32.band(notify, 0x7F))
    info = string.format("READ_STATUS_BYTE bTag %d: STB %s", bit32.band(notify, 0x7F), stb)
  else
    info = string.format("vendor notification 0x%02X", notify)
  end
  sub:add(F.notify, tvb(0, 1), info)
  pinfo.cols.info = info
  return len
end

local bulk = Proto("usbtmc.bulk", "USBTMC bulk")
function bulk.dissector(tvb, pinfo, tree) return dissect_bulk(tvb, pinfo, tree) end
local control = Proto("usbtmc.control", "USBTMC control")
function control.dissector(tvb, pinfo, tree) return dissect_control(tvb, pinfo, tree) end
local interrupt = Proto("usbtmc.interrupt", "USB488 interrupt")
function interrupt.dissector(tvb, pinfo, tree) return dissect_interrupt(tvb, pinfo, tree) end

-- Keyed by bInterfaceClass (USBTMC 1.0 Table 43: class 0xFE, subclass 0x03).
DissectorTable.get("usb.bulk"):add(0xFE, bulk)
DissectorTable.get("usb.control"):add(0xFE, control)
DissectorTable.get("usb.interrupt"):add(0xFE, interrupt)
