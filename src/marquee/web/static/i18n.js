// Interface text in Chinese and English, the chosen language, and locale-aware formatting.
// Chinese is the default for browsers whose language starts with "zh"; a choice made with the
// language switch is remembered in localStorage.

const STORE_KEY = 'marquee.lang';

const zh = {
  'app.name': 'Marquee 票务',
  'app.skip': '跳到主要内容',
  'app.loading': '正在加载…',
  'app.footer': 'Marquee · 支付使用沙箱，不会真实扣款',
  'lang.switch': 'English',
  'lang.switch_label': 'Switch to English',
  'nav.label': '主导航',
  'nav.shows': '演出',
  'nav.orders': '我的订单',
  'nav.console': '管理后台',
  'nav.login': '登录',
  'nav.register': '注册',
  'nav.logout': '退出',
  'nav.signed_in_as': '已登录：{name}',
  'page.not_found': '页面不存在',
  'page.not_found_body': '找不到这个页面。',
  'page.back_home': '返回演出列表',

  'shows.title': '演出',
  'shows.filters': '筛选演出',
  'shows.city': '城市',
  'shows.all_cities': '全部城市',
  'shows.category': '类别',
  'shows.all_categories': '全部类别',
  'shows.search': '搜索',
  'shows.search_placeholder': '演出或场馆名称',
  'shows.search_button': '搜索',
  'shows.reset': '清除筛选',
  'shows.count': '共 {n} 场演出',
  'shows.none': '没有符合条件的演出。',
  'shows.date_tbd': '日期待定',
  'shows.status.on_sale': '售票中',
  'shows.status.off_sale': '已停售',
  'shows.status.draft': '草稿',
  'pager.label': '分页',
  'pager.prev': '上一页',
  'pager.next': '下一页',
  'pager.page': '第 {page} / {pages} 页',

  'show.back': '全部演出',
  'show.sessions': '选择场次',
  'show.session': '场次',
  'show.no_sessions': '这场演出还没有场次。',
  'show.areas': '座位区域',
  'show.no_areas': '该场次还没有开放座位。',
  'show.available': '余 {n} 张',
  'show.sold_out': '已售罄',
  'show.not_on_sale': '未开售',
  'show.on_sale': '售票中',
  'show.quantity': '数量',
  'show.limit': '每人每场限购 {n} 张',
  'show.total': '合计：{amount}',
  'show.buy': '立即购买',
  'show.buying': '正在下单…',
  'show.sign_in_to_buy': '请先登录再购票',
  'show.choose_area': '请选择座位区域。',
  'show.live': '余票每 {n} 秒自动更新 · 更新于 {time}',
  'show.live_paused': '余票自动更新已暂停，{n} 秒后恢复',
  'show.live_failed': '暂时无法更新余票，稍后自动重试',
  'show.now_sold_out': '{area} 已售罄',
  'show.address': '地址',
  'show.venue': '场馆',
  'show.about': '演出介绍',

  'auth.login_title': '登录',
  'auth.register_title': '注册',
  'auth.email': '邮箱',
  'auth.password': '密码',
  'auth.full_name': '姓名',
  'auth.password_hint': '至少 8 位，须包含字母和数字。',
  'auth.login': '登录',
  'auth.register': '注册',
  'auth.working': '请稍候…',
  'auth.no_account': '还没有账号？',
  'auth.have_account': '已有账号？',
  'auth.welcome': '欢迎，{name}',
  'auth.signed_out': '你已退出登录。',
  'auth.need_sign_in': '请先登录。',

  'orders.title': '我的订单',
  'orders.none': '你还没有订单。',
  'orders.browse': '去看看演出',
  'orders.order_no': '订单号 {id}',
  'orders.view': '查看订单',
  'status.created': '已创建',
  'status.pending_payment': '待支付',
  'status.paid': '已支付',
  'status.cancelled': '已取消',
  'status.refunded': '已退款',
  'status.completed': '已完成',

  'order.title': '订单详情',
  'order.show': '演出',
  'order.venue': '场馆',
  'order.session': '场次时间',
  'order.area': '座位区域',
  'order.quantity': '数量',
  'order.unit_price': '单价',
  'order.total': '合计',
  'order.created_at': '下单时间',
  'order.paid_at': '支付时间',
  'order.cancelled_at': '取消时间',
  'order.refunded_at': '退款时间',
  'order.status': '状态',
  'order.pay_title': '支付',
  'order.countdown': '请在 {time} 内完成支付，超时订单将自动取消。',
  'order.expired': '支付时间已到，订单即将自动取消，座位会释放给其他观众。',
  'order.method': '支付方式',
  'order.method.alipay': '支付宝',
  'order.method.wechat_pay': '微信支付',
  'order.method.card': '银行卡',
  'order.token': '支付令牌（沙箱）',
  'order.token_hint':
    '沙箱支付不会真实扣款：以 decline 开头的令牌会被拒绝（如 decline_insufficient_funds），以 timeout 开头会模拟超时（可放心重试，不会重复扣款），以 unavailable 开头模拟支付渠道不可用；其他令牌都会支付成功。',
  'order.pay': '支付 {amount}',
  'order.paying': '正在支付…',
  'order.paid_notice': '支付成功，电子票已出票。',
  'order.cancel': '取消订单',
  'order.cancel_confirm': '确定要取消这个订单吗？座位将被释放。',
  'order.cancel_yes': '确认取消',
  'order.cancel_no': '不取消',
  'order.cancelled_notice': '订单已取消。',
  'order.cancel_reason.user': '由你取消',
  'order.cancel_reason.timeout': '超时未支付，自动取消',
  'order.tickets': '电子票',
  'order.ticket_alt': '第 {n} 张票的入场二维码',
  'order.ticket_seat': '第 {n} 张',
  'order.ticket.valid': '有效',
  'order.ticket.void': '已作废',
  'order.ticket.checked_in': '已检票（{time}）',
  'order.ticket_payload': '二维码内容（检票用）',
  'order.copy': '复制',
  'order.copied': '已复制',
  'order.refund_title': '退款',
  'order.refund_reason': '退款原因（可选）',
  'order.refund_request': '申请退款',
  'order.refund_sent': '退款申请已提交，等待主办方审核。',
  'order.refund.pending': '退款申请审核中',
  'order.refund.approved': '退款已批准',
  'order.refund.rejected': '退款申请被拒绝',
  'order.refund_note': '备注：{note}',
  'order.history': '订单记录',
  'order.back': '返回我的订单',
  'cause.placed': '下单',
  'cause.seats_held': '座位已锁定',
  'cause.payment_approved': '支付成功',
  'cause.cancelled_by_user': '用户取消',
  'cause.payment_window_elapsed': '超时未支付',
  'cause.refund_approved': '退款已批准',
  'cause.session_ended': '演出结束',

  'console.title': '管理后台',
  'console.tabs': '后台导航',
  'console.shows': '演出管理',
  'console.refunds': '退款审核',
  'console.checkin': '检票',
  'console.admin_only': '管理后台仅对主办方账号开放。',
  'console.sign_in_admin': '请使用主办方账号登录。',
  'console.all_statuses': '全部状态',
  'console.status': '状态',
  'console.show': '演出',
  'console.city': '城市',
  'console.venue': '场馆',
  'console.category': '类别',
  'console.date': '首场日期',
  'console.actions': '操作',
  'console.manage': '管理',
  'console.put_on_sale': '开售',
  'console.take_off_sale': '停售',
  'console.to_draft': '设为草稿',
  'console.status_changed': '「{title}」现在是{status}。',
  'console.no_shows': '还没有演出。',
  'console.new_venue': '新建场馆',
  'console.venue_name': '场馆名称',
  'console.address': '地址',
  'console.timezone': '时区',
  'console.create_venue': '创建场馆',
  'console.venue_created': '场馆「{name}」已创建。',
  'console.new_show': '新建演出',
  'console.title_field': '演出名称',
  'console.description': '介绍',
  'console.choose_venue': '选择场馆',
  'console.initial_status': '初始状态',
  'console.create_show': '创建演出',
  'console.show_created': '演出「{title}」已创建。',
  'console.sessions': '场次',
  'console.no_sessions': '还没有场次。',
  'console.new_session': '新增场次',
  'console.starts_at': '开始时间',
  'console.ends_at': '结束时间',
  'console.sale_starts_at': '开售时间（可选，留空立即开售）',
  'console.per_user_limit': '每人限购',
  'console.local_time': '场馆当地时间（{tz}）',
  'console.create_session': '创建场次',
  'console.session_created': '场次 {date} 已创建。',
  'console.session_on_sale': '可售',
  'console.session_not_on_sale': '不可售',
  'console.area': '区域',
  'console.price': '票价',
  'console.capacity': '容量',
  'console.reserved': '已预留',
  'console.sold': '已售',
  'console.available': '可售',
  'console.revenue': '销售额',
  'console.total': '合计',
  'console.no_areas': '还没有座位区域。',
  'console.new_area': '新增座位区域',
  'console.area_name': '区域名称',
  'console.create_area': '添加区域',
  'console.area_created': '座位区域「{name}」已添加。',
  'console.live': '销售数据每 {n} 秒自动更新 · 更新于 {time}',
  'console.public_page': '查看售票页',
  'console.refund_status': '申请状态',
  'console.refund.pending': '待审核',
  'console.refund.approved': '已批准',
  'console.refund.rejected': '已拒绝',
  'console.no_refunds': '没有退款申请。',
  'console.order': '订单',
  'console.amount': '金额',
  'console.reason': '原因',
  'console.requested_at': '申请时间',
  'console.approve': '批准退款',
  'console.refund_anyway': '仍然退款（座位将重新开售）',
  'console.reject': '拒绝',
  'console.reject_note': '拒绝理由（可选）',
  'console.approved_done': '已批准，订单已退款。',
  'console.approved_pending': '已批准，退款正在处理中。',
  'console.rejected_done': '已拒绝。',
  'console.checkin_payload': '二维码内容',
  'console.checkin_hint': '粘贴票面二维码内容，或用扫码枪扫描（扫码枪会自动按回车提交）。',
  'console.checkin_submit': '检票',
  'console.checkin.valid': '有效，检票通过',
  'console.checkin.already_used': '这张票已经检过（{time}）',
  'console.checkin.forged': '无效的票：二维码不是 Marquee 签发的或已被篡改',
  'console.checkin.refunded': '这张票已退款作废',
  'console.checkin_ticket': '票号 {id} · 第 {n} 张',

  'msg.network': '无法连接到服务器，请检查网络后重试。',
  'msg.rate_limited': '请求太频繁，请在 {n} 秒后重试。',
  'msg.too_many_attempts': '登录尝试次数过多，请在 {n} 秒后重试。',
  'msg.overloaded': '排队人数已满，系统繁忙，请在 {n} 秒后重试。',
  'msg.busy': '当前抢购人数太多，请在 {n} 秒后重试。',
  'msg.unavailable': '服务暂时不可用，请在 {n} 秒后重试。',
  'msg.timeout': '服务响应超时，请重试。',
  'msg.retry_now': '现在可以重试了。',
  'msg.sold_out': '已售罄，这个区域的票已经卖完了。',
  'msg.insufficient': '余票不足：只剩 {available} 张，你选择了 {requested} 张。',
  'msg.not_on_sale': '该场次当前不在售票时间内。',
  'msg.per_user_limit': '每人每场最多 {limit} 张，你已有 {already} 张。',
  'msg.invalid_quantity': '每单可购 1 至 {limit} 张。',
  'msg.payment_declined': '支付被拒绝（{reason}）。订单仍可支付，请换一种方式重试。',
  'msg.payment_timeout': '支付渠道响应超时。重试是安全的，不会重复扣款。',
  'msg.payment_unavailable': '支付渠道暂时无法连接，未扣款，请稍后重试。',
  'msg.payment_in_progress': '这个订单正在支付中，请稍候。',
  'msg.invalid_state': '订单当前状态为「{status}」，无法进行这个操作。',
  'msg.not_found': '找不到相关内容，可能已被删除。',
  'msg.refund_window_closed': '演出开始后不能再申请退款。',
  'msg.refund_already_requested': '这个订单已经提交过退款申请。',
  'msg.email_taken': '该邮箱已注册，请直接登录。',
  'msg.invalid_credentials': '邮箱或密码不正确。',
  'msg.invalid_email': '邮箱格式不正确。',
  'msg.tickets_used': '该订单有 {n} 张票已检票入场，退款会让这些座位重新开售。',
  'msg.ticket_void': '这张票已作废（订单已退款），不能再用于入场。',
  'msg.weak_password': '密码至少 8 位，且须包含字母和数字，不能与邮箱相同，也不能是常见的泄露密码。',
  'msg.invalid_full_name': '请填写姓名。',
  'msg.invalid_phone': '手机号格式不正确。',
  'msg.unauthorized': '登录已过期，请重新登录。',
  'msg.forbidden': '没有权限：需要主办方（管理员）账号。',
  'msg.validation': '请检查这些内容：{fields}。',
  'msg.already_exists': '已存在同名的项目。',
  'msg.capacity_below_taken': '容量不能低于已预留和已售出的座位数（{taken}）。',
  'msg.account_not_found': '你的账号已不存在，请重新登录。',
  'msg.generic': '出了点问题，请稍后重试。（错误代码：{code}）',
};

const en = {
  'app.name': 'Marquee Tickets',
  'app.skip': 'Skip to main content',
  'app.loading': 'Loading…',
  'app.footer': 'Marquee · payments use a sandbox; no money is taken',
  'lang.switch': '中文',
  'lang.switch_label': '切换到中文',
  'nav.label': 'Main',
  'nav.shows': 'Shows',
  'nav.orders': 'My orders',
  'nav.console': 'Organiser console',
  'nav.login': 'Log in',
  'nav.register': 'Register',
  'nav.logout': 'Log out',
  'nav.signed_in_as': 'Signed in as {name}',
  'page.not_found': 'Page not found',
  'page.not_found_body': 'There is no page here.',
  'page.back_home': 'Back to the shows',

  'shows.title': 'Shows',
  'shows.filters': 'Filter shows',
  'shows.city': 'City',
  'shows.all_cities': 'All cities',
  'shows.category': 'Category',
  'shows.all_categories': 'All categories',
  'shows.search': 'Search',
  'shows.search_placeholder': 'Show or venue name',
  'shows.search_button': 'Search',
  'shows.reset': 'Clear filters',
  'shows.count': '{n} shows',
  'shows.none': 'No show matches these filters.',
  'shows.date_tbd': 'Date to be announced',
  'shows.status.on_sale': 'On sale',
  'shows.status.off_sale': 'Off sale',
  'shows.status.draft': 'Draft',
  'pager.label': 'Pages',
  'pager.prev': 'Previous',
  'pager.next': 'Next',
  'pager.page': 'Page {page} of {pages}',

  'show.back': 'All shows',
  'show.sessions': 'Choose a session',
  'show.session': 'Session',
  'show.no_sessions': 'This show has no sessions yet.',
  'show.areas': 'Seat areas',
  'show.no_areas': 'No seats are open for this session yet.',
  'show.available': '{n} left',
  'show.sold_out': 'Sold out',
  'show.not_on_sale': 'Not on sale',
  'show.on_sale': 'On sale',
  'show.quantity': 'Quantity',
  'show.limit': 'At most {n} tickets per person for this session',
  'show.total': 'Total: {amount}',
  'show.buy': 'Buy now',
  'show.buying': 'Placing your order…',
  'show.sign_in_to_buy': 'Log in to buy tickets',
  'show.choose_area': 'Choose a seat area.',
  'show.live': 'Seats left update every {n} s · updated {time}',
  'show.live_paused': 'Live seat updates paused; resuming in {n} s',
  'show.live_failed': 'Cannot update seats left right now; retrying shortly',
  'show.now_sold_out': '{area} is sold out',
  'show.address': 'Address',
  'show.venue': 'Venue',
  'show.about': 'About the show',

  'auth.login_title': 'Log in',
  'auth.register_title': 'Create an account',
  'auth.email': 'Email',
  'auth.password': 'Password',
  'auth.full_name': 'Full name',
  'auth.password_hint': 'At least 8 characters, with letters and digits.',
  'auth.login': 'Log in',
  'auth.register': 'Register',
  'auth.working': 'One moment…',
  'auth.no_account': 'No account yet?',
  'auth.have_account': 'Already registered?',
  'auth.welcome': 'Welcome, {name}',
  'auth.signed_out': 'You are logged out.',
  'auth.need_sign_in': 'Please log in first.',

  'orders.title': 'My orders',
  'orders.none': 'You have no orders yet.',
  'orders.browse': 'Browse the shows',
  'orders.order_no': 'Order {id}',
  'orders.view': 'View order',
  'status.created': 'Created',
  'status.pending_payment': 'Awaiting payment',
  'status.paid': 'Paid',
  'status.cancelled': 'Cancelled',
  'status.refunded': 'Refunded',
  'status.completed': 'Completed',

  'order.title': 'Order',
  'order.show': 'Show',
  'order.venue': 'Venue',
  'order.session': 'Session',
  'order.area': 'Seat area',
  'order.quantity': 'Quantity',
  'order.unit_price': 'Unit price',
  'order.total': 'Total',
  'order.created_at': 'Ordered',
  'order.paid_at': 'Paid',
  'order.cancelled_at': 'Cancelled',
  'order.refunded_at': 'Refunded',
  'order.status': 'Status',
  'order.pay_title': 'Payment',
  'order.countdown': 'Pay within {time} or the order is cancelled automatically.',
  'order.expired':
    'The payment time is over: the order is being cancelled and its seats go back on sale.',
  'order.method': 'Payment method',
  'order.method.alipay': 'Alipay',
  'order.method.wechat_pay': 'WeChat Pay',
  'order.method.card': 'Card',
  'order.token': 'Payment token (sandbox)',
  'order.token_hint':
    'The sandbox takes no money. Tokens starting with "decline" are declined (e.g. decline_insufficient_funds), "timeout" simulates a provider timeout (retrying is safe: you are never charged twice), "unavailable" simulates an unreachable provider; any other token is approved.',
  'order.pay': 'Pay {amount}',
  'order.paying': 'Paying…',
  'order.paid_notice': 'Payment received: your e-tickets are ready.',
  'order.cancel': 'Cancel order',
  'order.cancel_confirm': 'Cancel this order? Its seats will be released.',
  'order.cancel_yes': 'Yes, cancel it',
  'order.cancel_no': 'Keep it',
  'order.cancelled_notice': 'The order is cancelled.',
  'order.cancel_reason.user': 'cancelled by you',
  'order.cancel_reason.timeout': 'not paid in time',
  'order.tickets': 'E-tickets',
  'order.ticket_alt': 'Entry QR code of ticket {n}',
  'order.ticket_seat': 'Ticket {n}',
  'order.ticket.valid': 'Valid',
  'order.ticket.void': 'Void',
  'order.ticket.checked_in': 'Checked in ({time})',
  'order.ticket_payload': 'QR payload (for check-in)',
  'order.copy': 'Copy',
  'order.copied': 'Copied',
  'order.refund_title': 'Refund',
  'order.refund_reason': 'Reason (optional)',
  'order.refund_request': 'Request a refund',
  'order.refund_sent': 'Refund requested; the organiser will review it.',
  'order.refund.pending': 'Refund request under review',
  'order.refund.approved': 'Refund approved',
  'order.refund.rejected': 'Refund request rejected',
  'order.refund_note': 'Note: {note}',
  'order.history': 'Order history',
  'order.back': 'Back to my orders',
  'cause.placed': 'placed',
  'cause.seats_held': 'seats held',
  'cause.payment_approved': 'payment approved',
  'cause.cancelled_by_user': 'cancelled by the buyer',
  'cause.payment_window_elapsed': 'not paid in time',
  'cause.refund_approved': 'refund approved',
  'cause.session_ended': 'session ended',

  'console.title': 'Organiser console',
  'console.tabs': 'Console sections',
  'console.shows': 'Shows',
  'console.refunds': 'Refund requests',
  'console.checkin': 'Check-in',
  'console.admin_only': 'The console is for organiser accounts only.',
  'console.sign_in_admin': 'Log in with an organiser account.',
  'console.all_statuses': 'All statuses',
  'console.status': 'Status',
  'console.show': 'Show',
  'console.city': 'City',
  'console.venue': 'Venue',
  'console.category': 'Category',
  'console.date': 'First date',
  'console.actions': 'Actions',
  'console.manage': 'Manage',
  'console.put_on_sale': 'Put on sale',
  'console.take_off_sale': 'Take off sale',
  'console.to_draft': 'Back to draft',
  'console.status_changed': '“{title}” is now {status}.',
  'console.no_shows': 'No shows yet.',
  'console.new_venue': 'New venue',
  'console.venue_name': 'Venue name',
  'console.address': 'Address',
  'console.timezone': 'Time zone',
  'console.create_venue': 'Create venue',
  'console.venue_created': 'Venue “{name}” created.',
  'console.new_show': 'New show',
  'console.title_field': 'Title',
  'console.description': 'Description',
  'console.choose_venue': 'Choose a venue',
  'console.initial_status': 'Initial status',
  'console.create_show': 'Create show',
  'console.show_created': 'Show “{title}” created.',
  'console.sessions': 'Sessions',
  'console.no_sessions': 'No sessions yet.',
  'console.new_session': 'New session',
  'console.starts_at': 'Starts',
  'console.ends_at': 'Ends',
  'console.sale_starts_at': 'Sale starts (optional; empty means now)',
  'console.per_user_limit': 'Tickets per person',
  'console.local_time': 'Local time at the venue ({tz})',
  'console.create_session': 'Create session',
  'console.session_created': 'Session {date} created.',
  'console.session_on_sale': 'On sale',
  'console.session_not_on_sale': 'Not on sale',
  'console.area': 'Area',
  'console.price': 'Price',
  'console.capacity': 'Capacity',
  'console.reserved': 'Reserved',
  'console.sold': 'Sold',
  'console.available': 'Available',
  'console.revenue': 'Revenue',
  'console.total': 'Total',
  'console.no_areas': 'No seat areas yet.',
  'console.new_area': 'New seat area',
  'console.area_name': 'Area name',
  'console.create_area': 'Add area',
  'console.area_created': 'Seat area “{name}” added.',
  'console.live': 'Sales update every {n} s · updated {time}',
  'console.public_page': 'Open the public page',
  'console.refund_status': 'Request status',
  'console.refund.pending': 'Pending',
  'console.refund.approved': 'Approved',
  'console.refund.rejected': 'Rejected',
  'console.no_refunds': 'No refund requests.',
  'console.order': 'Order',
  'console.amount': 'Amount',
  'console.reason': 'Reason',
  'console.requested_at': 'Requested',
  'console.approve': 'Approve refund',
  'console.refund_anyway': 'Refund anyway (the seats go back on sale)',
  'console.reject': 'Reject',
  'console.reject_note': 'Reason for rejecting (optional)',
  'console.approved_done': 'Approved: the order is refunded.',
  'console.approved_pending': 'Approved: the refund is being completed.',
  'console.rejected_done': 'Rejected.',
  'console.checkin_payload': 'QR payload',
  'console.checkin_hint':
    'Paste the ticket’s QR payload, or scan it with a scanner (it presses Enter for you).',
  'console.checkin_submit': 'Check in',
  'console.checkin.valid': 'Valid: checked in',
  'console.checkin.already_used': 'Already checked in ({time})',
  'console.checkin.forged': 'Invalid ticket: not issued by Marquee, or altered',
  'console.checkin.refunded': 'This ticket was refunded and is void',
  'console.checkin_ticket': 'Ticket {id} · seat {n}',

  'msg.network': 'Cannot reach Marquee. Check your connection and try again.',
  'msg.rate_limited': 'Too many requests. Retry in {n} s.',
  'msg.too_many_attempts': 'Too many login attempts. Retry in {n} s.',
  'msg.overloaded': 'The queue is full: we are very busy right now. Retry in {n} s.',
  'msg.busy': 'Too many buyers for these seats right now. Retry in {n} s.',
  'msg.unavailable': 'The service is unavailable for a moment. Retry in {n} s.',
  'msg.timeout': 'The service took too long to answer. Please try again.',
  'msg.retry_now': 'You can try again now.',
  'msg.sold_out': 'Sold out: there are no seats left in this area.',
  'msg.insufficient': 'Not enough seats: only {available} left, you asked for {requested}.',
  'msg.not_on_sale': 'This session is not on sale right now.',
  'msg.per_user_limit':
    'At most {limit} tickets per person for this session; you already have {already}.',
  'msg.invalid_quantity': 'Order between 1 and {limit} tickets.',
  'msg.payment_declined':
    'The payment was declined ({reason}). The order can still be paid: try another way.',
  'msg.payment_timeout':
    'The payment provider did not answer in time. Retrying is safe: you are never charged twice.',
  'msg.payment_unavailable':
    'The payment provider cannot be reached; nothing was charged. Retry shortly.',
  'msg.payment_in_progress': 'This order is being paid already; one moment.',
  'msg.invalid_state': 'The order is {status}; that cannot be done now.',
  'msg.not_found': 'Not found: it may have been removed.',
  'msg.refund_window_closed': 'Refunds can only be requested before the session starts.',
  'msg.refund_already_requested': 'A refund has already been requested for this order.',
  'msg.email_taken': 'This email is already registered: log in instead.',
  'msg.invalid_credentials': 'Wrong email or password.',
  'msg.invalid_email': 'That email address does not look right.',
  'msg.tickets_used':
    '{n} ticket(s) of this order were already used at the gate; a refund puts those seats back on sale.',
  'msg.ticket_void': 'This ticket was voided (its order refunded) and admits no one.',
  'msg.weak_password':
    'The password needs at least 8 characters, letters and digits, must not be your email, and must not be a commonly leaked password.',
  'msg.invalid_full_name': 'Please enter your name.',
  'msg.invalid_phone': 'That phone number does not look right.',
  'msg.unauthorized': 'Your session has ended. Please log in again.',
  'msg.forbidden': 'Not allowed: this needs an organiser (admin) account.',
  'msg.validation': 'Please check: {fields}.',
  'msg.already_exists': 'One with that name exists already.',
  'msg.capacity_below_taken': 'Capacity cannot drop below the seats reserved and sold ({taken}).',
  'msg.account_not_found': 'Your account no longer exists; please log in again.',
  'msg.generic': 'Something went wrong. Please try again. (Error code: {code})',
};

const TABLES = { zh, en };
const LOCALES = { zh: 'zh-CN', en: 'en' };

function detect() {
  let saved = null;
  try {
    saved = localStorage.getItem(STORE_KEY);
  } catch {
    saved = null;
  }
  if (saved === 'zh' || saved === 'en') return saved;
  const preferred = (navigator.language || '').toLowerCase();
  return preferred.startsWith('zh') ? 'zh' : 'en';
}

let current = detect();

/** The interface language: "zh" or "en". */
export function lang() {
  return current;
}

/** The BCP 47 locale used for numbers and dates. */
export function locale() {
  return LOCALES[current];
}

/** Switch the interface language and remember the choice. */
export function setLang(next) {
  if (!(next in TABLES)) return;
  current = next;
  try {
    localStorage.setItem(STORE_KEY, next);
  } catch {
    // Private mode without storage: the choice lasts for this page only.
  }
  document.documentElement.lang = LOCALES[next];
}

/** The text for ``key`` with ``{name}`` placeholders filled from ``params``. */
export function t(key, params = {}) {
  const text = TABLES[current][key] ?? TABLES.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) =>
    name in params ? String(params[name]) : whole,
  );
}

/** Whether a translation exists (for codes that may or may not have one). */
export function has(key) {
  return key in TABLES[current];
}

/** The text for ``key``, or ``fallback`` (e.g. a status code a newer server added). */
export function tOr(key, fallback) {
  return has(key) ? t(key) : fallback;
}

/** An amount (a JSON number from the API) in its currency, e.g. ¥1,280 or CN¥1,280.00. */
export function money(amount, currency = 'CNY') {
  const value = Number(amount);
  const whole = Number.isInteger(value);
  try {
    return new Intl.NumberFormat(locale(), {
      style: 'currency',
      currency,
      minimumFractionDigits: whole ? 0 : 2,
      maximumFractionDigits: 2,
    }).format(value);
  } catch {
    return `${value} ${currency}`;
  }
}

/** An ISO 8601 instant in the browser's time zone, date and time. */
export function dateTime(iso) {
  if (!iso) return '';
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return String(iso);
  return new Intl.DateTimeFormat(locale(), { dateStyle: 'medium', timeStyle: 'short' }).format(
    when,
  );
}

/**
 * When a session starts, as the venue's clock shows it, with the zone named (the buyer may be
 * far from the venue): `timeZone` is the venue's IANA zone. Without one (or one this browser
 * does not know) the browser's own zone is used, still named.
 */
export function sessionTime(iso, timeZone = undefined) {
  if (!iso) return '';
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return String(iso);
  const options = {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    weekday: 'short',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23', // 19:30, as the seed and the venue's posters write it
    timeZoneName: 'short',
  };
  try {
    return new Intl.DateTimeFormat(locale(), { ...options, timeZone }).format(when);
  } catch {
    return new Intl.DateTimeFormat(locale(), options).format(when);
  }
}

/** A clock time for "updated at" notes. */
export function clock(when = new Date()) {
  return new Intl.DateTimeFormat(locale(), {
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  }).format(when);
}

document.documentElement.lang = LOCALES[current];
